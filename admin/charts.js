// Live traffic from the proxy's own Prometheus /metrics, computed in the
// browser: requests per second, latency (p50 and p99 from the histogram)
// and the share of errors, per namespace, drawn as small inline SVG line
// charts. No chart library.
"use strict";

// Polls /metrics every intervalMs and keeps the last `keep` points per
// namespace: {t, rate, p50, p99, errors} (rate in requests/s, latencies
// in milliseconds, errors in % of requests; null when no request ran).
class Traffic {
  constructor(intervalMs, keep) {
    this.intervalMs = intervalMs || 3000;
    this.keep = keep || 60;
    this.previous = null;
    this.points = {};
    this.timer = null;
    this.error = null;
  }

  start(onUpdate) {
    const tick = async () => {
      try {
        const samples = await Api.metrics();
        this.add(Date.now() / 1000, Metrics.byNamespace(samples));
        this.error = null;
      } catch (e) {
        this.error = e;
      }
      if (this.timer !== null) onUpdate(this);
    };
    this.timer = setInterval(tick, this.intervalMs);
    tick();
  }

  stop() {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  add(t, byNs) {
    const prev = this.previous;
    this.previous = { t, byNs };
    if (!prev) return;
    const dt = t - prev.t;
    if (dt <= 0) return;
    for (const [ns, now] of Object.entries(byNs)) {
      const before = prev.byNs[ns] || { requests: 0, errors: 0, buckets: {} };
      const requests = Math.max(0, now.requests - before.requests);
      const errors = Math.max(0, now.errors - before.errors);
      const p50 = Metrics.quantile(0.5, before.buckets, now.buckets);
      const p99 = Metrics.quantile(0.99, before.buckets, now.buckets);
      const list = (this.points[ns] = this.points[ns] || []);
      list.push({
        t,
        rate: requests / dt,
        p50: p50 === null ? null : p50 * 1000,
        p99: p99 === null ? null : p99 * 1000,
        errors: requests ? (100 * errors) / requests : null,
      });
      if (list.length > this.keep) list.shift();
    }
  }

  series(ns) {
    return this.points[ns] || [];
  }

  // The latest request rate of a namespace, or null before two polls.
  rate(ns) {
    const list = this.points[ns];
    if (list && list.length) return list[list.length - 1].rate;
    return this.previous ? 0 : null;
  }

  // Total requests so far (counter value), or null before the first poll.
  total(ns) {
    if (!this.previous) return null;
    const n = this.previous.byNs[ns];
    return n ? n.requests : 0;
  }
}

const Charts = {
  W: 340,
  H: 120,
  PAD: { left: 44, right: 8, top: 10, bottom: 20 },

  // A line chart of `lines`: [{label, cls, values: [{t, v}]}] (v null =
  // no data). `unit` labels the y axis.
  line(title, unit, lines, windowSecs) {
    const { W, H, PAD } = Charts;
    const all = lines.flatMap((l) => l.values.filter((p) => p.v !== null && p.v !== undefined));
    const now = Date.now() / 1000;
    // Zoom on the data until the window fills (at least 30 s).
    const first = Math.min(now, ...lines.flatMap((l) => l.values.map((p) => p.t)));
    windowSecs = Math.min(windowSecs, Math.max(30, Math.ceil((now - first) / 10) * 10 + 10));
    const t0 = now - windowSecs;
    let max = Math.max(0, ...all.map((p) => p.v));
    max = max > 0 ? Charts.nice(max) : 1;
    const x = (t) => PAD.left + ((W - PAD.left - PAD.right) * (t - t0)) / windowSecs;
    const y = (v) => H - PAD.bottom - ((H - PAD.top - PAD.bottom) * v) / max;
    const grid = [0, 0.5, 1].map((f) => [
      svg("line", { x1: PAD.left, x2: W - PAD.right, y1: y(max * f), y2: y(max * f), class: "grid" }),
      svg("text", { x: PAD.left - 4, y: y(max * f) + 4, class: "axis", "text-anchor": "end" }, fmtNumber(max * f)),
    ]);
    const paths = lines.map((l) => {
      const segments = [];
      let current = [];
      for (const p of l.values) {
        if (p.v === null || p.v === undefined || p.t < t0) {
          if (current.length) segments.push(current);
          current = [];
        } else current.push(`${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`);
      }
      if (current.length) segments.push(current);
      return segments.map((s) =>
        s.length === 1
          ? svg("circle", { cx: s[0].split(",")[0], cy: s[0].split(",")[1], r: 2, class: `dot ${l.cls}` })
          : svg("polyline", { points: s.join(" "), class: `series ${l.cls}` }));
    });
    const latest = lines.map((l) => {
      const last = [...l.values].reverse().find((p) => p.v !== null && p.v !== undefined);
      return h(`span.legend.${l.cls}`, `${l.label}: ${last ? fmtNumber(last.v) : "—"} ${unit}`);
    });
    const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-label": title },
      grid,
      svg("text", { x: PAD.left, y: H - 4, class: "axis" }, windowSecs >= 120 ? `${Math.round(windowSecs / 60)} min ago` : `${Math.round(windowSecs)} s ago`),
      svg("text", { x: W - PAD.right, y: H - 4, class: "axis", "text-anchor": "end" }, "now"),
      paths);
    return h("figure.chart", h("figcaption", title, " ", h("span.unit", `(${unit})`)), chart, h("div.legends", latest));
  },

  // 1, 2 or 5 times a power of ten, at least x.
  nice(x) {
    const p = Math.pow(10, Math.floor(Math.log10(x)));
    for (const m of [1, 2, 5, 10]) if (m * p >= x) return m * p;
    return 10 * p;
  },

  // The three charts of one namespace.
  traffic(traffic, ns) {
    const pts = traffic.series(ns);
    const windowSecs = (traffic.keep * traffic.intervalMs) / 1000;
    const pick = (k) => pts.map((p) => ({ t: p.t, v: p[k] }));
    return h("div.charts",
      Charts.line("Request rate", "req/s", [{ label: "now", cls: "s1", values: pick("rate") }], windowSecs),
      Charts.line("Latency", "ms", [
        { label: "p50", cls: "s1", values: pick("p50") },
        { label: "p99", cls: "s2", values: pick("p99") },
      ], windowSecs),
      Charts.line("Errors", "% of requests", [{ label: "now", cls: "s3", values: pick("errors") }], windowSecs));
  },
};
