// The namespace editor of the Prism admin UI: YAML in a textarea,
// "Validate" (ApplyNamespace with dry_run) showing each error next to the
// field it names and the diff, then "Apply".
"use strict";

function template() {
  const me = App.me || {};
  const who = me.groups && me.groups.length ? `group:${me.groups[0]}` : me.subject && me.subject !== "anonymous" ? `user:${me.subject}` : "group:ops";
  return [
    "name: my-namespace",
    "dal: keyvalue",
    "description: What this namespace holds, and who owns it",
    "backend:",
    "  kind: memstore",
    "policy:",
    `  read: ["${who}"]`,
    `  write: ["${who}"]`,
    `  admin: ["${who}"]`,
    "",
  ].join("\n");
}

Views.edit = async function (el, params) {
  const creating = !params.name;
  append(el, pageHeader(creating ? "Create a namespace" : `Edit ${params.name}`));
  const area = h("textarea#yaml", { rows: 18, spellcheck: "false", "aria-label": "Namespace YAML" });
  const result = h("div#result");
  const checked = h("div#checked");
  const validate = h("button#validate", { type: "button" }, "Validate");
  const apply = h("button#apply", { type: "button", disabled: true }, "Apply");
  let expectedVersion = creating ? "0" : null;
  let validatedText = null;

  append(el,
    h("div.card",
      h("p.help", "Write the namespace as YAML, as in a namespace file. Validate checks it on the proxy (parsed, backend chosen) and shows what would change; nothing is stored until you Apply."),
      area,
      h("div.actions", validate, apply, h("a.button.secondary", { href: creating ? "#/namespaces" : `#/namespaces/${encodeURIComponent(params.name)}` }, "Cancel"))),
    result,
    checked);

  if (creating) {
    area.value = template();
  } else {
    area.value = "";
    area.disabled = true;
    append(result, loading(`namespace ${params.name}`));
    try {
      const ns = await Api.get(`/namespaces/${encodeURIComponent(params.name)}`);
      area.value = ns.yaml;
      expectedVersion = ns.version;
      clear(result);
    } catch (e) {
      clear(result);
      append(result, errorBox(e, `load namespace ${params.name}`));
      return;
    } finally {
      area.disabled = false;
    }
  }
  area.addEventListener("input", () => {
    apply.disabled = area.value !== validatedText;
  });

  validate.addEventListener("click", async () => {
    clear(result);
    clear(checked);
    apply.disabled = true;
    validatedText = null;
    const text = area.value;
    append(result, loading("the validation"));
    let res;
    try {
      res = await Api.call("POST", "/namespaces?dry_run=true", { yaml: text, dryRun: true });
    } catch (e) {
      clear(result);
      append(result, errorBox(e, "validate"));
      return;
    }
    clear(result);
    if (res.errors.length) {
      append(result, h("div.error#validation-errors", { role: "alert" },
        h("strong", res.errors.length === 1 ? "1 problem in the YAML" : `${res.errors.length} problems in the YAML`),
        h("p", "Each problem is shown below next to the field it names. Fix them and validate again.")));
      append(checked, annotatedYaml(text, res.errors));
      return;
    }
    validatedText = text;
    apply.disabled = false;
    append(result, notice(
      res.created ? `Valid. Applying creates namespace ${res.name}.`
        : res.changed ? `Valid. Applying changes namespace ${res.name} (now at version ${res.version}).`
        : `Valid, and identical to the version serving (${res.version}); applying changes nothing.`, "ok"));
    if (res.diff) append(result, h("h2", "What changes"), diffView(res.diff));
  });

  apply.addEventListener("click", async () => {
    apply.disabled = true;
    clear(checked);
    const body = { yaml: area.value, dryRun: false };
    if (expectedVersion !== null) body.expectedVersion = expectedVersion;
    append(result, loading("the change"));
    try {
      const res = await Api.call("POST", "/namespaces", body);
      App.flash(`Namespace ${res.name} ${res.created ? "created" : "applied"} at version ${res.version}.`);
      location.hash = `#/namespaces/${encodeURIComponent(res.name)}`;
    } catch (e) {
      clear(result);
      append(result, errorBox(e, "apply"));
    }
  });
};

// The YAML with line numbers and, after the line of each field an error
// names (e.g. backend.kind), the error's message.
function annotatedYaml(text, errors) {
  const lines = text.split("\n");
  const fieldLine = yamlFieldLines(lines);
  const byLine = {};
  const whole = [];
  for (const err of errors) {
    const line = lineOfField(fieldLine, err.field);
    if (line === null) whole.push(err);
    else (byLine[line] = byLine[line] || []).push(err);
  }
  const rows = [];
  lines.forEach((line, i) => {
    rows.push(h(`div.yline${byLine[i] ? ".has-error" : ""}`, h("span.ln", i + 1), h("code", line || " ")));
    for (const err of byLine[i] || []) {
      rows.push(h("div.field-error", { "data-field": err.field }, h("span.ln", "▲"), h("span", h("strong", err.field), ": ", err.message)));
    }
  });
  return h("div.card",
    h("h2", "Problems, next to their fields"),
    whole.map((err) => h("div.field-error.whole", { "data-field": err.field }, h("strong", err.field || "the file"), ": ", err.message)),
    h("div.annotated", rows));
}

// {"backend.kind": lineIndex, ...} for every `key:` line, by indentation.
function yamlFieldLines(lines) {
  const map = {};
  const stack = [];
  lines.forEach((line, i) => {
    const m = /^(\s*)(-\s+)?([^\s#:][^:#]*?)\s*:(\s|$)/.exec(line);
    if (!m) return;
    const indent = m[1].length + (m[2] ? m[2].length : 0);
    while (stack.length && stack[stack.length - 1].indent >= indent) stack.pop();
    stack.push({ indent, key: m[3].replace(/^["']|["']$/g, "") });
    const path = stack.map((s) => s.key).join(".");
    if (!(path in map)) map[path] = i;
  });
  return map;
}

// The line of `field` (or of its nearest named parent); null when the
// error is about the whole file or names nothing in it.
function lineOfField(map, field) {
  if (!field) return null;
  let path = field.replace(/\[\d+\]/g, "");
  while (path) {
    if (path in map) return map[path];
    const dot = path.lastIndexOf(".");
    if (dot < 0) break;
    path = path.slice(0, dot);
  }
  return null;
}

function diffView(diff) {
  return h("pre.diff#diff", diff.split("\n").map((line) => {
    const cls = line.startsWith("+") && !line.startsWith("+++") ? "add" : line.startsWith("-") && !line.startsWith("---") ? "del" : line.startsWith("@@") ? "hunk" : "ctx";
    return h(`span.${cls}`, line + "\n");
  }));
}

