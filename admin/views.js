// The screens of the Prism admin UI. Each view renders into `el` and may
// register clean-up (timers, streams) with App.onLeave.
"use strict";

const Views = {};

function pageHeader(title, ...actions) {
  return h("div.page-head", h("h1", title), h("div.actions", actions));
}

function healthBadge(status) {
  if (!status) return badge("unknown", "muted");
  return status.healthy ? badge("healthy", "ok") : badge("unhealthy", "bad");
}

function fmtRate(rate) {
  return rate === null || rate === undefined ? "measuring…" : `${fmtNumber(rate)} req/s`;
}

// ---------------------------------------------------------------- sign-in

Views.signin = async function (el, params) {
  if (App.authOff) {
    append(el,
      pageHeader("Sign in"),
      h("div.notice.info#auth-off", h("strong", "Authentication is disabled on this proxy."),
        h("p", "Every caller is the anonymous principal and may administer every namespace, so no token is needed. ",
          "To require sign-in, set auth.enabled: true in prism.yaml."),
        h("a.button", { href: "#/namespaces" }, "Continue to namespaces")));
    return;
  }
  const input = h("textarea#token", { rows: 4, placeholder: "eyJhbGciOi…", spellcheck: "false", autocomplete: "off" });
  const out = h("div#signin-result");
  const submit = async (ev) => {
    ev.preventDefault();
    clear(out);
    const token = input.value.trim().replace(/^Bearer\s+/i, "");
    if (!token) {
      append(out, errorBox({ message: "Paste a bearer token first (for example from `prismctl login --print-token` or your identity provider)." }, "sign in"));
      return;
    }
    Api.setToken(token);
    append(out, loading("your identity"));
    try {
      App.me = await Api.get("/whoami");
      App.renderUser();
      location.hash = params.next || "#/namespaces";
    } catch (e) {
      Api.signOut();
      clear(out);
      append(out, errorBox(e, "sign in with this token"));
    }
  };
  append(el,
    pageHeader("Sign in"),
    App.signinReason ? errorBox({ message: App.signinReason }, "continue: you are not signed in") : null,
    h("form.card#signin-form", { onsubmit: submit },
      h("label", { for: "token" }, "Bearer token (JWT)"),
      input,
      h("p.help", "The token is kept in this browser tab only (sessionStorage) and sent to this proxy as Authorization: Bearer. Closing the tab or signing out forgets it."),
      h("button#signin", { type: "submit" }, "Sign in")),
    out);
  App.signinReason = null;
  input.focus();
};

// -------------------------------------------------------------- who am I

Views.whoami = async function (el) {
  append(el, pageHeader("Who am I"));
  const body = append(el, h("div.card", loading("your identity"))).lastChild;
  try {
    const me = await Api.get("/whoami");
    clear(body);
    append(body, kv([
      ["Subject", h("span#whoami-subject", me.subject)],
      ["Authenticated by", me.method === "anonymous" ? "nobody: authentication is disabled on this proxy" : me.method],
      ["Groups", me.groups.length ? me.groups.join(", ") : ""],
      ["Scopes", me.scopes.length ? me.scopes.join(", ") : ""],
      ["Token expires", fmtTime(me.expiresAtUnixSecs)],
    ]));
  } catch (e) {
    clear(body);
    append(body, errorBox(e, "find out who you are"));
  }
};

// --------------------------------------------------------- namespace list

// ListNamespaces; a proxy without it (older build) falls back to GetStatus.
async function listNamespaces() {
  try {
    return await Api.get("/namespaces");
  } catch (e) {
    if (e.code !== "UNIMPLEMENTED") throw e;
    const status = await Api.get("/status");
    return {
      store: "",
      namespaces: status.namespaces.map((s) => ({ name: s.name, dal: s.dal, version: "", status: s, description: "" })),
    };
  }
}

Views.namespaces = async function (el) {
  append(el, pageHeader("Namespaces", h("a.button#new-namespace", { href: "#/namespaces/new" }, "Create namespace")));
  const body = append(el, h("div#namespaces", loading("namespaces"))).lastChild;
  let list;
  try {
    list = await listNamespaces();
  } catch (e) {
    clear(body);
    append(body, errorBox(e, "list the namespaces"));
    return;
  }
  clear(body);
  if (!list.namespaces.length) {
    append(body, h("div.empty#no-namespaces",
      h("p", "No namespaces yet — create one."),
      h("p.help", "A namespace is a named data set with its own backend, schema and access policy. Applications call it by name."),
      h("a.button", { href: "#/namespaces/new" }, "Create a namespace")));
    return;
  }
  const rateCells = {};
  const rows = list.namespaces.map((ns) => {
    rateCells[ns.name] = h("td.num", "measuring…");
    const s = ns.status || {};
    return h("tr", { "data-namespace": ns.name },
      h("td", h("a", { href: `#/namespaces/${encodeURIComponent(ns.name)}` }, ns.name),
        ns.description ? h("div.muted.small", ns.description) : null),
      h("td", ns.dal),
      h("td", s.backendKind || "", s.mode ? h("span.muted", ` (${s.mode})`) : null),
      h("td", healthBadge(ns.status), s.healthy === false && s.healthDetail ? h("div.small.bad-text", s.healthDetail) : null),
      rateCells[ns.name],
      h("td.num", ns.version || "—"));
  });
  append(body,
    table(["Namespace", "DAL", "Backend", "Health", "Request rate", "Version"], rows, "list"),
    list.store ? h("p.help", `Stored in ${list.store}.`) : null);
  const traffic = new Traffic(3000, 60);
  traffic.start(() => {
    for (const [name, cell] of Object.entries(rateCells)) {
      cell.textContent = fmtRate(traffic.rate(name));
    }
  });
  App.onLeave(() => traffic.stop());
};

// ------------------------------------------------------- namespace detail

Views.namespace = async function (el, params) {
  const name = params.name;
  append(el, pageHeader(name,
    h("a.button#edit-namespace", { href: `#/namespaces/${encodeURIComponent(name)}/edit` }, "Edit"),
    h("button.danger#delete-namespace", { onclick: () => confirmDelete(el, name) }, "Delete")));
  const confirmSlot = append(el, h("div#confirm")).lastChild;
  const body = append(el, h("div#namespace", loading(`namespace ${name}`))).lastChild;
  let ns;
  try {
    ns = await Api.get(`/namespaces/${encodeURIComponent(name)}`);
  } catch (e) {
    clear(body);
    append(body, errorBox(e, `load namespace ${name}`), h("p", h("a", { href: "#/namespaces" }, "Back to the namespaces")));
    return;
  }
  el.confirmSlot = confirmSlot;
  el.version = ns.version;
  const s = ns.status || {};
  const chartsSlot = h("div#charts", h("p.muted", "Measuring: the first points appear after a few seconds."));
  clear(body);
  append(body,
    ns.description ? h("p.lead", ns.description) : null,
    h("div.grid",
      h("section.card#overview", h("h2", "Overview"), kv([
        ["DAL", ns.dal],
        ["Version", ns.version],
        ["Applied", ns.appliedAt],
        ["Source", ns.source],
        ["Backend chosen", ns.explicitBackend ? "explicitly in the YAML" : "by Prism from the namespace's needs"],
      ])),
      h("section.card#backend", h("h2", "Backend"), kv([
        ["Health", [healthBadge(s), s.healthDetail ? h("div.small.bad-text", s.healthDetail) : null]],
        ["Kind", s.backendKind],
        ["Mode", s.mode],
        ["Capabilities", (s.capabilities || []).length ? s.capabilities.join(", ") : ""],
      ]), patternDetails(s.pattern))),
    ns.dal === "keyvalue" || ns.dal === "timeseries" ? h("section.card#migration", h("h2", "Migration"), loading("the migration")) : null,
    h("section.card", h("h2", "Live traffic"), h("p.help", "Computed in your browser from this proxy's /metrics, polled every 3 seconds."), chartsSlot),
    h("section.card#schema", h("h2", "Schema"), schemaDetails(ns.schema)),
    h("div.grid",
      h("section.card#policy", h("h2", "Policy"), policyDetails(ns.policy)),
      limitsDetails(ns.limits)),
    h("section.card#explain", h("h2", "Why this backend"), loading("the explanation")),
    h("section.card#config", h("h2", "Configuration (YAML)"), h("pre.yaml", ns.yaml || "(empty)")));

  const traffic = new Traffic(3000, 60);
  traffic.start(() => {
    clear(chartsSlot);
    if (traffic.error) append(chartsSlot, errorBox(traffic.error, "read /metrics"));
    append(chartsSlot, Charts.traffic(traffic, name));
    const total = traffic.total(name);
    append(chartsSlot, h("p.help", total === null ? "" : `${total} requests since the proxy started.`));
  });
  App.onLeave(() => traffic.stop());

  const migrationSlot = body.querySelector("#migration");
  if (migrationSlot) {
    const refresh = () => showMigration(migrationSlot, name, refresh);
    await refresh();
    const timer = setInterval(() => {
      // Keep a form the operator is typing in.
      if (!migrationSlot.querySelector("form")) refresh();
    }, 2000);
    App.onLeave(() => clearInterval(timer));
  }

  const explainSlot = body.querySelector("#explain");
  try {
    const ex = await Api.get(`/namespaces/${encodeURIComponent(name)}/explain`);
    clear(explainSlot);
    append(explainSlot, h("h2", "Why this backend"),
      h("ul", ex.reasons.map((r) => h("li", r))),
      Object.keys(ex.options).length ? [h("h3", "Backend options"), kv(Object.entries(ex.options).sort())] : null,
      ex.needs.length ? [h("h3", "Needs"), kv(ex.needs.map((n) => [n.name, `${n.value}${n.defaulted ? " (default)" : ""}`]))] : null,
      ex.rejected.length ? [h("h3", "Other candidates"), h("ul", ex.rejected.map((r) => h("li", h("strong", r.kind), ": ", r.reasons.join("; "))))] : null);
  } catch (e) {
    clear(explainSlot);
    append(explainSlot, h("h2", "Why this backend"), errorBox(e, "explain the backend choice"));
  }
};

// ------------------------------------------------------------ migration

function fmtSeconds(s) {
  if (s === null || s === undefined) return "unknown";
  const n = Math.round(Number(s));
  return n >= 120 ? `${Math.round(n / 60)} min` : `${n} s`;
}

// The migration card: where the move to another backend is, and its steps
// (ADR-016). Polled every 2 seconds while no form is open.
async function showMigration(slot, name, refresh) {
  const path = `/namespaces/${encodeURIComponent(name)}/migration`;
  let m;
  try {
    m = await Api.get(path);
  } catch (e) {
    clear(slot);
    append(slot, h("h2", "Migration"), errorBox(e, "load the migration"));
    return;
  }
  // The last step's result stays shown across refreshes.
  const out = h("div#migration-result", slot.lastResult || []);
  const step = async (action, extra) => {
    clear(out);
    append(out, loading(`migrate ${action}`));
    try {
      const res = await Api.call("POST", path, Object.assign({ action, force: !!(slot.querySelector("#migration-force") || {}).checked }, extra || {}));
      // The namespace's version (and at the end its backend) changed:
      // show the whole page again, with the result on top.
      const forced = (res.forced || []).map((f) => ` Forced past: ${f}.`).join("");
      App.flash((res.phase ? `Migration ${action}: now in ${res.phase} (version ${res.version}).` : `Migration ${action}: the migration ended (version ${res.version}).`) + forced);
      slot.lastResult = null;
      await App.route();
    } catch (e) {
      slot.lastResult = [errorBox(e, `migrate ${action}`)];
      clear(out);
      append(out, slot.lastResult);
    }
  };
  clear(slot);
  append(slot, h("h2", "Migration"));
  if (!m.phase) {
    const to = h("textarea#migration-to", { rows: 3, placeholder: "{kind: postgres, options: {url: postgres://prism@db/prism}}" });
    const sample = h("input#migration-sample", { type: "number", min: 0, max: 1, step: 0.01, value: 0.05 });
    append(slot,
      h("p.muted", `Not migrating: ${m.source} serves this namespace.`),
      h("details#migration-start", h("summary", "Move to another backend"),
        h("form", { onsubmit: (ev) => { ev.preventDefault(); step("start", { to: to.value, readSample: Number(sample.value) }); } },
          h("label", { for: "migration-to" }, "Target backend (YAML or JSON)"), to,
          h("label", { for: "migration-sample" }, "Share of reads compared in shadow-read"), sample,
          h("label", h("input#migration-force", { type: "checkbox" }), " Force past the pre-flight check"),
          h("div.actions", h("button#migration-start-button", { type: "submit" }, "Start (dual-write)")))),
      out);
    return;
  }
  const b = m.backfill;
  const total = b && b.totalItems !== null && b.totalItems !== undefined ? Number(b.totalItems) : null;
  const backfill = !b ? "not started" : b.finished
    ? `done: ${b.items} items, ${b.bytes} bytes`
    : [h("progress#migration-progress", { max: total || 1, value: Number(b.items) }),
       ` ${b.items}${total !== null ? ` / ${total}` : ""} items, ${Math.round(b.itemsPerSecond)} items/s, ETA ${fmtSeconds(b.etaSeconds)}`];
  append(slot,
    kv([
      ["Phase", badge(m.phase, m.phase === "promoted" ? "ok" : "muted")],
      ["From → to", `${m.source} → ${m.target}`],
      ["Shadow writes", `${m.shadowWrites} ok, ${m.shadowFailures} failed`],
      ["Repairs", `${m.repairsQueued} queued, ${m.repaired} done`],
      ["Backfill", backfill],
      ["Backfill error", m.backfillError],
      ["Shadow reads", `${m.readsCompared} compared, ${m.mismatches} mismatched`],
    ]),
    (m.mismatchSamples || []).length
      ? [h("h3", "Mismatches (ids and keys hashed)"), h("ul#migration-mismatches", m.mismatchSamples.map((x) => h("li", `${x.kind}: id ${x.id} key ${x.key}`)))]
      : null,
    (m.blockers || []).length
      ? [h("h3", "Next step blocked by"), h("ul#migration-blockers", m.blockers.map((x) => h("li", x)))]
      : h("p#migration-ready", "Nothing blocks the next step."),
    h("label", h("input#migration-force", { type: "checkbox" }), " Force past the pre-flight check"),
    h("div.actions",
      m.phase === "promoted"
        ? h("button#migration-finalize", { type: "button", onclick: () => step("finalize") }, "Finalize")
        : h("button#migration-advance", { type: "button", onclick: () => step("advance") }, "Advance"),
      h("button.secondary#migration-rollback", { type: "button", onclick: () => step("rollback") }, "Roll back one phase"),
      h("button.danger#migration-abort", { type: "button", onclick: () => step("abort") }, "Abort")),
    out);
}

function patternDetails(p) {
  if (!p) return h("p.muted", "Served inside the proxy (no pattern process).");
  return [h("h3", "Pattern process"), kv([
    ["State", p.state ? badge(p.state, p.state === "serving" ? "ok" : p.state === "starting" ? "muted" : "bad") : "not supervised (remote)"],
    ["Endpoint", p.endpoint],
    ["Restarts", p.restarts],
    ["PID", p.pid && p.pid !== 0 ? p.pid : ""],
    ["Last error", p.lastError],
  ])];
}

function schemaDetails(schema) {
  if (!schema || !schema.message) {
    return h("p.muted", "No schema: values are opaque bytes (no validation, no PII masking).");
  }
  const rows = schema.fields.map((f) => h("tr", { class: f.pii ? "pii" : null },
    h("td.mono", f.path),
    h("td.mono", f.type),
    h("td", f.pii ? badge(`PII: ${f.pii}`, "pii") : ""),
    h("td", f.index),
    h("td", f.accessAudit ? "yes" : "")));
  return [
    kv([["Message", h("span.mono", schema.message)], ["Encoding", schema.encoding], ["Proto file", schema.proto]]),
    schema.fields.length ? table(["Field", "Type", "PII", "Index", "Access audited"], rows, "fields") : h("p.muted", "The message has no fields."),
  ];
}

function policyDetails(policy) {
  if (!policy || !policy.defined) {
    return h("p.warn-text", "No policy: with authentication on, nobody may use this namespace; with it off, everyone may.");
  }
  const list = (xs) => (xs.length ? xs.join(", ") : "");
  return kv([
    ["Read", list(policy.read)],
    ["Write", list(policy.write)],
    ["Admin", list(policy.admin)],
    ["PII in clear", list(policy.piiRead)],
  ]);
}

function limitsDetails(limits) {
  const entries = Object.entries(limits || {}).sort();
  if (!entries.length) return null;
  return h("section.card#limits", h("h2", "Limits"), kv(entries));
}

function confirmDelete(el, name) {
  const slot = el.confirmSlot || el.querySelector("#confirm");
  clear(slot);
  const input = h("input#confirm-name", { type: "text", autocomplete: "off", placeholder: name });
  const out = h("div");
  const go = async (ev) => {
    ev.preventDefault();
    if (input.value.trim() !== name) {
      clear(out);
      append(out, errorBox({ message: `Type the namespace's name, ${name}, to confirm.` }, "delete yet"));
      return;
    }
    clear(out);
    append(out, loading("the deletion"));
    try {
      const q = el.version ? `?expected_version=${encodeURIComponent(el.version)}` : "";
      const res = await Api.call("DELETE", `/namespaces/${encodeURIComponent(name)}${q}`);
      App.flash(`Namespace ${name} deleted (recorded as version ${res.version}). Its stored data is kept.`);
      location.hash = "#/namespaces";
    } catch (e) {
      clear(out);
      append(out, errorBox(e, `delete ${name}`));
    }
  };
  append(slot, h("form.card.danger-zone", { onsubmit: go },
    h("h2", `Delete namespace ${name}?`),
    h("p", "New calls get NOT_FOUND at once; calls in flight finish, then the backend is closed. The stored data is kept, so re-creating the namespace with the same backend brings it back."),
    h("label", { for: "confirm-name" }, `Type ${name} to confirm`),
    input,
    h("div.actions",
      h("button.danger#confirm-delete", { type: "submit" }, "Delete"),
      h("button.secondary", { type: "button", onclick: () => clear(slot) }, "Cancel")),
    out));
  input.focus();
}

// ------------------------------------------------------ pattern processes

Views.patterns = async function (el) {
  append(el, pageHeader("Pattern processes"),
    h("p.help", "Namespaces in process mode are served by a separate pattern process that the proxy starts, health-checks and restarts. Refreshed every 5 seconds."));
  const body = append(el, h("div#patterns", loading("the processes"))).lastChild;
  const render = async () => {
    let status;
    try {
      status = await Api.get("/status");
    } catch (e) {
      clear(body);
      append(body, errorBox(e, "read the status"));
      return;
    }
    clear(body);
    const withPattern = status.namespaces.filter((n) => n.pattern);
    const embedded = status.namespaces.length - withPattern.length;
    if (!withPattern.length) {
      append(body, h("div.empty#no-patterns",
        h("p", status.namespaces.length ? "No namespace runs a pattern process: every namespace is served inside the proxy (embedded)." : "No namespaces yet — create one."),
        h("p.help", "Set backend.mode: process in a namespace's YAML to run its backend as a separate process.")));
      return;
    }
    append(body, table(["Namespace", "Backend", "State", "Restarts", "PID", "Endpoint", "Last error"],
      withPattern.map((n) => h("tr", { "data-namespace": n.name },
        h("td", h("a", { href: `#/namespaces/${encodeURIComponent(n.name)}` }, n.name)),
        h("td", `${n.backendKind} (${n.mode})`),
        h("td", n.pattern.state ? badge(n.pattern.state, n.pattern.state === "serving" ? "ok" : "bad") : h("span.muted", "remote, not supervised")),
        h("td.num", n.pattern.restarts),
        h("td.num", n.pattern.pid || ""),
        h("td.mono.small", n.pattern.endpoint),
        h("td.small", n.pattern.lastError || h("span.muted", "none")))), "list"),
      embedded ? h("p.help", `${embedded} other namespace${embedded === 1 ? " is" : "s are"} served inside the proxy.`) : null);
  };
  await render();
  const timer = setInterval(render, 5000);
  App.onLeave(() => clearInterval(timer));
};

// -------------------------------------------------------------- audit log

Views.audit = async function (el, params) {
  const ns = h("input#filter-namespace", { type: "text", value: params.namespace || "", placeholder: "every namespace" });
  const principal = h("input#filter-principal", { type: "text", value: params.principal || "", placeholder: "every principal" });
  const status = h("select#filter-status",
    ["", "OK", "INVALID_ARGUMENT", "NOT_FOUND", "PERMISSION_DENIED", "UNAUTHENTICATED", "FAILED_PRECONDITION", "RESOURCE_EXHAUSTED", "UNAVAILABLE", "DEADLINE_EXCEEDED", "INTERNAL"]
      .map((s) => h("option", { value: s, selected: s === (params.status || "") }, s || "every status")));
  const state = h("span#stream-state.badge.muted", "connecting…");
  const tbody = h("tbody#audit-rows");
  const empty = h("div.empty#audit-empty", h("p", "No audit records match yet — they appear here live as calls are made."));
  const errorSlot = h("div");
  const apply = (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    if (ns.value.trim()) q.set("namespace", ns.value.trim());
    if (principal.value.trim()) q.set("principal", principal.value.trim());
    if (status.value) q.set("status", status.value);
    location.hash = `#/audit${q.toString() ? "?" + q : ""}`;
  };
  append(el, pageHeader("Audit log", state),
    h("form.filters#audit-filters", { onsubmit: apply },
      h("label", "Namespace ", ns), h("label", "Principal ", principal), h("label", "Status ", status),
      h("button", { type: "submit" }, "Filter")),
    h("p.help", "Every data call, newest first, as the proxy records it. Keys are hashed unless the namespace records them in clear. Values are never recorded."),
    errorSlot,
    empty,
    h("table.list.audit", h("thead", h("tr", ["Time", "Principal", "Namespace", "Call", "Status", "Latency", "Keys", "PII fields"].map((x) => h("th", x)))), tbody));

  const controller = new AbortController();
  App.onLeave(() => controller.abort());
  const q = new URLSearchParams({ follow: "true", limit: "100" });
  if (params.namespace) q.set("namespace", params.namespace);
  if (params.principal) q.set("principal", params.principal);
  if (params.status) q.set("status", params.status);
  const add = (r) => {
    empty.hidden = true;
    const row = h("tr", { class: r.status === "OK" ? null : "failed", "data-principal": r.principal },
      h("td.mono.small", r.time),
      h("td", r.principal),
      h("td", r.namespace),
      h("td", `${r.dal}.${r.method}`, r.selection ? h("span.muted", ` (${r.selection})`) : null),
      h("td", badge(r.status, r.status === "OK" ? "ok" : "bad")),
      h("td.num", `${fmtNumber(Number(r.latencyUs) / 1000)} ms`),
      h("td.mono.small", [...r.ids, ...r.keys].slice(0, 3).join(" "), r.ids.length + r.keys.length > 3 || r.truncated ? " …" : ""),
      h("td.small", r.piiFields.map((p) => `${p.field}${p.masked ? " (masked)" : ""}`).join(", ")));
    tbody.insertBefore(row, tbody.firstChild);
    while (tbody.children.length > 500) tbody.removeChild(tbody.lastChild);
  };
  const opened = () => {
    state.textContent = "live";
    state.className = "badge ok";
  };
  try {
    await Api.follow(`/audit?${q}`, controller.signal, add, opened);
    if (!controller.signal.aborted) {
      state.textContent = "ended";
      state.className = "badge muted";
      append(errorSlot, notice("The proxy ended the stream (it is shutting down). Reload the page to reconnect.", "warn"));
    }
  } catch (e) {
    if (controller.signal.aborted) return;
    state.textContent = "stopped";
    state.className = "badge bad";
    append(errorSlot, errorBox(e, "follow the audit log"));
  }
};
