// The admin API client: JSON over /api/v1 with the bearer token kept in
// sessionStorage (gone when the tab closes), the live audit stream
// (newline-delimited JSON read with fetch, which unlike EventSource can
// send the Authorization header) and the proxy's Prometheus /metrics.
"use strict";

class ApiError extends Error {
  constructor(code, message, httpStatus) {
    super(message);
    this.code = code;
    this.httpStatus = httpStatus;
  }
}

const Api = {
  TOKEN_KEY: "prism.admin.token",

  token() {
    return sessionStorage.getItem(this.TOKEN_KEY) || "";
  },
  setToken(token) {
    sessionStorage.setItem(this.TOKEN_KEY, token.trim());
  },
  signOut() {
    sessionStorage.removeItem(this.TOKEN_KEY);
  },

  headers(extra) {
    const headers = Object.assign({ Accept: "application/json" }, extra || {});
    const token = this.token();
    if (token) headers.Authorization = `Bearer ${token}`;
    return headers;
  },

  // Calls /api/v1<path>; resolves with the JSON answer, rejects with an
  // ApiError carrying the API's code and message. Every call but a GET
  // says Content-Type: application/json, body or not: the proxy refuses
  // changes without it (what a cross-site form could send).
  async call(method, path, body) {
    let response;
    try {
      response = await fetch(`/api/v1${path}`, {
        method,
        headers: this.headers(method === "GET" ? {} : { "Content-Type": "application/json" }),
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
      });
    } catch (e) {
      throw new ApiError("UNAVAILABLE", `The proxy did not answer (${e.message}). Is it running, and is this page served by it?`, 0);
    }
    const text = await response.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : {};
    } catch (e) {
      throw new ApiError("INTERNAL", `The proxy answered HTTP ${response.status} with something that is not JSON: ${text.slice(0, 200)}`, response.status);
    }
    if (!response.ok) {
      const err = new ApiError(json.code || `HTTP_${response.status}`, json.message || text, response.status);
      if (response.status === 401) App.unauthenticated(err);
      throw err;
    }
    return json;
  },

  get(path) { return this.call("GET", path); },

  // Reads the audit tail as a stream; calls onRecord(record) per line
  // until `signal` aborts or the stream ends. Rejects with an ApiError.
  // onOpen() runs once the proxy accepted the stream.
  async follow(path, signal, onRecord, onOpen) {
    const response = await fetch(`/api/v1${path}`, { headers: this.headers(), signal, cache: "no-store" });
    if (!response.ok) {
      let json = {};
      try { json = await response.json(); } catch (e) { /* not JSON */ }
      const err = new ApiError(json.code || `HTTP_${response.status}`, json.message || response.statusText, response.status);
      if (response.status === 401) App.unauthenticated(err);
      throw err;
    }
    if (onOpen) onOpen();
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffered = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += decoder.decode(value, { stream: true });
      let newline;
      while ((newline = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, newline).trim();
        buffered = buffered.slice(newline + 1);
        if (!line) continue;
        const json = JSON.parse(line);
        if (json.error) throw new ApiError(json.error.code, json.error.message, 200);
        onRecord(json);
      }
    }
  },

  // The proxy's Prometheus metrics, parsed (see Metrics.parse).
  async metrics() {
    const response = await fetch("/metrics", { cache: "no-store" });
    if (!response.ok) throw new ApiError("UNAVAILABLE", `/metrics answered HTTP ${response.status}`, response.status);
    return Metrics.parse(await response.text());
  },
};

// Prometheus text format → [{name, labels: {...}, value}].
const Metrics = {
  parse(text) {
    const samples = [];
    for (const raw of text.split("\n")) {
      const line = raw.trim();
      if (!line || line.startsWith("#")) continue;
      const m = /^([a-zA-Z_:][\w:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
      if (!m) continue;
      const labels = {};
      const re = /(\w+)="((?:[^"\\]|\\.)*)"/g;
      let l;
      while ((l = re.exec(m[3] || ""))) labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
      samples.push({ name: m[1], labels, value: Number(m[4]) });
    }
    return samples;
  },

  // Per namespace: total requests, errors (status other than ok), and the
  // latency histogram's cumulative bucket counts {le: count}.
  byNamespace(samples) {
    const out = {};
    const ns = (name) => (out[name] = out[name] || { requests: 0, errors: 0, buckets: {}, count: 0, sum: 0 });
    for (const s of samples) {
      const n = s.labels.namespace;
      if (n === undefined) continue;
      if (s.name === "prism_requests_total") {
        ns(n).requests += s.value;
        if (s.labels.status && s.labels.status !== "ok") ns(n).errors += s.value;
      } else if (s.name === "prism_request_duration_seconds_bucket") {
        const b = ns(n).buckets;
        b[s.labels.le] = (b[s.labels.le] || 0) + s.value;
      } else if (s.name === "prism_request_duration_seconds_count") {
        ns(n).count += s.value;
      } else if (s.name === "prism_request_duration_seconds_sum") {
        ns(n).sum += s.value;
      }
    }
    return out;
  },

  // The q-quantile (0..1) of the requests between two bucket snapshots,
  // interpolated linearly inside the bucket, in seconds; null without
  // requests.
  quantile(q, before, after) {
    const delta = (raw) => (after[raw] || 0) - ((before || {})[raw] || 0);
    const bounds = Object.keys(after)
      .filter((raw) => raw !== "+Inf")
      .map((raw) => [raw, Number(raw)])
      .sort((a, b) => a[1] - b[1]);
    const total = "+Inf" in after ? delta("+Inf") : bounds.length ? delta(bounds[bounds.length - 1][0]) : 0;
    if (!(total > 0)) return null;
    const rank = q * total;
    let prevLe = 0;
    let prevCount = 0;
    for (const [raw, le] of bounds) {
      const count = delta(raw);
      if (count >= rank) {
        const inBucket = count - prevCount;
        return inBucket > 0 ? prevLe + ((le - prevLe) * (rank - prevCount)) / inBucket : le;
      }
      prevLe = le;
      prevCount = count;
    }
    return prevLe;
  },
};
