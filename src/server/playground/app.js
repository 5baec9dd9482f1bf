// The mapping playground. Plain JavaScript, no dependencies. Every value from the server is
// put on the page with textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { fixtures: [], vendors: [], files: new Map(), edits: new Map(), current: null, tail: null, timer: null, report: null };

function headers(extra) {
  const h = Object.assign({}, extra);
  const token = $("token").value.trim();
  if (token) h["Authorization"] = "Bearer " + token;
  return h;
}

async function getJson(url) {
  const r = await fetch(url, { headers: headers() });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.detail || body.title || ("HTTP " + r.status));
  return body;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") node.textContent = v;
    else if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c) node.append(c);
  return node;
}

function option(value, label) {
  return el("option", { value, text: label });
}

async function init() {
  $("token").value = sessionStorage.getItem("callgate-admin-token") || "";
  $("token").addEventListener("change", () => {
    sessionStorage.setItem("callgate-admin-token", $("token").value.trim());
    load();
  });
  $("translate").addEventListener("click", translate);
  $("fixture").addEventListener("change", pickFixture);
  $("from").addEventListener("change", () => { fillFixtures(); loadFiles(); schedule(); });
  $("save-case").addEventListener("click", saveCase);
  $("to").addEventListener("change", () => { loadFiles(); schedule(); });
  $("payload").addEventListener("input", schedule);
  $("file").addEventListener("change", showFile);
  $("editor").addEventListener("input", editFile);
  $("reset").addEventListener("click", () => { state.edits.clear(); showFile(); markEdited(); schedule(); });
  $("tail-toggle").addEventListener("click", toggleTail);
  await load();
}

async function load() {
  try {
    const data = await getJson("/admin/playground/fixtures");
    state.fixtures = data.fixtures;
    state.vendors = data.vendors;
    $("status").textContent = "snapshot v" + data.version + " · mappings folder " + data.mappings;
    $("status").className = "";
    fillVendors();
    fillFixtures();
    await loadFiles();
  } catch (e) {
    $("status").textContent = "cannot load: " + e.message;
    $("status").className = "bad";
  }
}

function fillVendors() {
  const from = $("from"), to = $("to");
  const keepFrom = from.value || "ringcentral", keepTo = to.value || "vidyo";
  from.replaceChildren(option("auto", "auto (detect)"));
  to.replaceChildren();
  for (const v of state.vendors) {
    if (v.decodes) from.append(option(v.id, v.id));
    if (v.encodes) to.append(option(v.id, v.id));
  }
  from.value = keepFrom;
  to.value = keepTo;
}

// The cases whose input is the chosen source's (every source's for auto), grouped by the
// vendor they translate into.
function fillFixtures() {
  const select = $("fixture");
  const from = $("from").value;
  const shown = state.fixtures.map((f, i) => [f, i]).filter(([f]) => from === "auto" || f.from === from);
  select.replaceChildren(option("", "— paste a payload, or pick one of " + shown.length + " mapping cases —"));
  const groups = new Map();
  for (const [f, i] of shown) {
    const key = f.from + " → " + f.to;
    if (!groups.has(key)) groups.set(key, el("optgroup", { label: key }));
    groups.get(key).append(option(String(i), f.name));
  }
  for (const key of [...groups.keys()].sort()) select.append(groups.get(key));
}

function pickFixture() {
  const f = state.fixtures[Number($("fixture").value)];
  if (!f) return;
  $("payload").value = f.payload;
  $("from").value = f.from;
  $("to").value = f.to;
  fillFixtures();
  $("fixture").value = String(state.fixtures.indexOf(f));
  loadFiles().then(translate);
}

async function loadFiles() {
  const vendors = [...new Set([$("from").value, $("to").value].filter((v) => v && v !== "auto"))];
  const select = $("file");
  const keep = state.current;
  select.replaceChildren();
  state.files.clear();
  for (const vendor of vendors) {
    try {
      const data = await getJson("/admin/playground/files?vendor=" + encodeURIComponent(vendor));
      const group = el("optgroup", { label: vendor });
      for (const f of data.files) {
        state.files.set(f.path, f.text);
        group.append(option(f.path, f.path));
      }
      select.append(group);
    } catch (e) {
      select.append(option("", vendor + ": " + e.message));
    }
  }
  if (keep && state.files.has(keep)) select.value = keep;
  showFile();
}

function showFile() {
  const path = $("file").value;
  state.current = path;
  $("editor").value = state.edits.has(path) ? state.edits.get(path) : (state.files.get(path) || "");
  markEdited();
}

function editFile() {
  const path = state.current;
  if (!path) return;
  const text = $("editor").value;
  if (text === state.files.get(path)) state.edits.delete(path); else state.edits.set(path, text);
  markEdited();
  schedule();
}

function markEdited() {
  const n = state.edits.size;
  $("edited").hidden = n === 0;
  $("edited").textContent = n === 1 ? "1 file edited — not saved; only this page sees it"
    : n + " files edited — not saved; only this page sees them";
}

function schedule() {
  clearTimeout(state.timer);
  state.timer = setTimeout(translate, 400);
}

async function translate() {
  clearTimeout(state.timer);
  const payload = $("payload").value;
  if (!payload.trim()) return;
  const request = { from: $("from").value, to: $("to").value, payload, edits: Object.fromEntries(state.edits) };
  $("translate").disabled = true;
  try {
    const r = await fetch("/admin/translate", {
      method: "POST",
      headers: headers({ "Content-Type": "application/json" }),
      body: JSON.stringify(request),
    });
    const report = await r.json();
    if (!r.ok) {
      showReport({ events: [], errors: [{ stage: "request", message: report.detail || ("HTTP " + r.status) }] });
    } else {
      showReport(report);
    }
  } catch (e) {
    showReport({ events: [], errors: [{ stage: "request", message: e.message }] });
  } finally {
    $("translate").disabled = false;
  }
}

function where(d) {
  if (!d.file) return "";
  return d.line ? d.file + ":" + d.line : d.file;
}

function showReport(report) {
  state.report = report;
  $("save-case").disabled = !(report.events || []).some((e) => e.output.status === "rendered");
  const errors = $("errors");
  errors.replaceChildren();
  if (report.errors.length === 0) errors.append(el("li", { class: "none", text: "none" }));
  for (const d of report.errors) {
    errors.append(el("li", { "data-testid": "error" },
      el("span", { class: "stage", text: d.stage }),
      where(d) ? el("code", { class: "where", "data-testid": "error-where", text: where(d) }) : null,
      el("span", { class: "message", text: d.message })));
  }
  const events = $("events");
  events.replaceChildren();
  const n = report.events.length;
  $("summary").textContent = report.vendor ? n + " event" + (n === 1 ? "" : "s") + " from " + report.vendor + (report.edited ? " · edited mappings" : "") : "";
  report.events.forEach((e, i) => events.append(eventCard(e, i)));
}

function eventCard(e, i) {
  const out = e.output;
  const card = el("article", { class: "event " + out.status, "data-testid": "event" });
  card.append(el("header", {},
    el("span", { class: "index", text: "#" + (i + 1) }),
    el("span", { class: "type", "data-testid": "event-type", text: e.canonical.type || "?" }),
    el("span", { class: "verdict " + e.lifecycle.verdict, "data-testid": "verdict", text: e.lifecycle.verdict }),
    el("span", { class: "outcome", "data-testid": "outcome", text: out.status + (out.reason && out.status !== "failed" ? " · " + out.reason : "") })));
  if (e.lifecycle.detail) card.append(el("p", { class: "detail", text: e.lifecycle.detail }));
  const cols = el("div", { class: "cols" });
  cols.append(el("div", {}, el("h3", { text: "canonical" }),
    el("pre", { "data-testid": "canonical", text: JSON.stringify(e.canonical, null, 2) })));
  const target = el("div", {}, el("h3", { text: "output" + (out.template ? " · " + out.template : "") }));
  if (out.status === "rendered") {
    if (out.absent && out.absent.length) {
      target.append(el("p", { class: "absent", "data-testid": "absent",
        text: "absent in this event, so rendered as a default or left out: " + out.absent.join(", ") }));
    }
    if (out.body !== undefined) {
      target.append(el("pre", { "data-testid": "output-body", text: JSON.stringify(out.body, null, 2) }));
    } else {
      target.append(el("pre", { "data-testid": "output-url", text: out.method + " " + out.url }));
    }
  } else {
    target.append(el("p", { class: "muted", text: out.reason || out.status }));
  }
  cols.append(target);
  card.append(cols);
  return card;
}

// "Save as case": the current input and what it renders now, as a case file for
// mappings/<to>/cases/ (README "cases/*.yaml"). Its values are JSON, which YAML reads as is.
function caseYaml() {
  const from = $("from").value, to = $("to").value, payload = $("payload").value;
  let input;
  try {
    input = JSON.parse(payload);
  } catch {
    // A parameter payload: one URL or query string per line, each an inline map.
    input = payload.split("\n").map((l) => l.trim()).filter(Boolean).map((line) => {
      const query = line.includes("?") ? line.slice(line.indexOf("?") + 1) : line;
      return Object.fromEntries(new URLSearchParams(query));
    });
    if (input.length === 1) input = input[0];
  }
  const outputs = state.report.events.filter((e) => e.output.status === "rendered").map((e) => e.output);
  const expect = outputs.map((o) => ({ "$": o.body !== undefined ? o.body : { method: o.method, url: o.url } }));
  const types = state.report.events.map((e) => e.canonical.type).filter(Boolean);
  return [
    "name: " + JSON.stringify("playground: " + from + " " + [...new Set(types)].join(", ") + " → " + to),
    "from: " + JSON.stringify(from),
    "to: " + JSON.stringify(to),
    "input: " + JSON.stringify(input),
    "# The whole output as rendered when this case was saved: review it before committing.",
    "expect:",
    ...expect.map((e) => "  - " + JSON.stringify(e)),
    "outputs: " + outputs.length,
    "",
  ].join("\n");
}

function saveCase() {
  if (!state.report) return;
  const blob = new Blob([caseYaml()], { type: "application/yaml" });
  const link = el("a", { href: URL.createObjectURL(blob), download: "playground-" + $("from").value + "-to-" + $("to").value + ".yaml" });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

// The live tail: /admin/tail is read with fetch (not EventSource) so that the admin token
// can go in a header.
async function toggleTail() {
  if (state.tail) { state.tail.abort(); return; }
  const params = new URLSearchParams();
  for (const name of ["route", "destination", "type", "partitionkey"]) {
    const v = $("tail-" + name).value.trim();
    if (v) params.set(name, v);
  }
  const controller = new AbortController();
  state.tail = controller;
  $("tail-toggle").textContent = "Stop";
  $("tail-state").textContent = "connecting…";
  try {
    const r = await fetch("/admin/tail?" + params, { headers: headers({ Accept: "text/event-stream" }), signal: controller.signal });
    if (!r.ok) throw new Error((await r.json().catch(() => ({}))).detail || ("HTTP " + r.status));
    $("tail-state").textContent = "live";
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
        if (data) tailLine(JSON.parse(data));
      }
    }
    $("tail-state").textContent = "ended";
  } catch (e) {
    $("tail-state").textContent = e.name === "AbortError" ? "stopped" : "error: " + e.message;
  } finally {
    state.tail = null;
    $("tail-toggle").textContent = "Start";
  }
}

function tailText(r) {
  switch (r.kind) {
    case "event":
      return r.route + " ← " + r.vendor + " " + r.type + " call " + r.partitionkey + " · " +
        r.destinations.map((d) => d.destination + ": " + d.status + (d.reason ? " (" + d.reason + ")" : "")).join(", ");
    case "dropped":
      return r.route + " ← " + r.vendor + " " + r.type + " call " + r.partitionkey + " · dropped: " + r.reason;
    case "delivery":
      return r.route + "/" + r.destination + " → " + r.type + " call " + r.partitionkey + " · " + r.outcome +
        (r.status ? " " + r.status : "") + " attempt " + r.attempt +
        (r.next_attempt ? " · next " + r.next_attempt : "") + (r.reason ? " · " + r.reason : "");
    case "reload":
      return "reload " + r.outcome + " · v" + r.version + " · " + r.detail;
    case "lagged":
      return "missed " + r.missed + " records (too slow)";
    case "live":
      return "── live: " + r.backlog + " earlier records above ──";
    default:
      return JSON.stringify(r);
  }
}

function tailLine(r) {
  const list = $("tail");
  const cls = "t-" + (r.kind === "delivery" ? r.outcome : r.kind);
  list.prepend(el("li", { class: cls, "data-testid": "tail-line" },
    el("time", { text: (r.time || "").slice(11, 23) }), el("span", { text: tailText(r) })));
  while (list.children.length > 200) list.lastChild.remove();
}

init();
