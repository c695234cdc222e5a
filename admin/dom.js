// Tiny DOM helpers for the Prism admin UI. Elements are built with h(),
// never from HTML strings, so text from the API is always shown as text.
"use strict";

// h("div.card#id", {attrs}, child, ...): an element. Children may be
// strings, numbers, nodes, arrays or null (skipped). Attributes starting
// with "on" are event listeners.
function h(spec, attrs, ...children) {
  const m = /^([a-z0-9]+)((?:[.#][\w-]+)*)$/i.exec(spec);
  const el = document.createElement(m ? m[1] : spec);
  if (m && m[2]) {
    for (const part of m[2].match(/[.#][\w-]+/g)) {
      if (part[0] === ".") el.classList.add(part.slice(1));
      else el.id = part.slice(1);
    }
  }
  if (attrs && (typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "value") el.value = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, ...children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

// An SVG element.
function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined) continue;
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function loading(what) {
  return h("p.loading", { role: "status" }, h("span.spinner"), `Loading ${what}…`);
}

// An error box with the API's words.
function errorBox(err, what) {
  const code = err && err.code ? err.code : "";
  const message = err && err.message ? err.message : String(err);
  return h("div.error", { role: "alert" },
    h("strong", what ? `Could not ${what}` : "Something went wrong"),
    code ? h("span.code", code) : null,
    h("p", message));
}

function notice(text, kind) {
  return h(`div.notice.${kind || "ok"}`, { role: "status" }, text);
}

function badge(text, kind) {
  return h(`span.badge.${kind}`, text);
}

function kv(rows) {
  return h("dl.kv", rows.filter(Boolean).map(([k, v]) => [h("dt", k), h("dd", v === "" || v === undefined || v === null ? h("span.muted", "—") : v)]));
}

function table(headers, rows, cls) {
  return h(`table${cls ? "." + cls : ""}`,
    h("thead", h("tr", headers.map((x) => h("th", x)))),
    h("tbody", rows));
}

function fmtTime(unixSecs) {
  const n = Number(unixSecs);
  if (!n) return "";
  return new Date(n * 1000).toISOString().replace(".000Z", "Z");
}

function fmtNumber(x, digits) {
  if (x === null || x === undefined || Number.isNaN(x)) return "—";
  if (x === 0) return "0";
  const d = digits === undefined ? (Math.abs(x) >= 100 ? 0 : Math.abs(x) >= 10 ? 1 : 2) : digits;
  return x.toFixed(d);
}
