// The call timeline page (/admin/timeline): searches the archive (GET /admin/calls?q=),
// loads a call's timeline (GET /admin/calls/{id}) and draws it as SVG: one lane per leg,
// events placed by the time callgate received them, coloured by the lifecycle's verdict and
// the destinations' fates. Everything is drawn here; the page loads nothing from elsewhere.
"use strict";
const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";

function headers() {
  const h = {};
  const token = $("token").value.trim();
  if (token) h["Authorization"] = "Bearer " + token;
  return h;
}

function status(text, bad) {
  $("status").textContent = text;
  $("status").className = bad ? "bad" : "";
}

async function getJson(url) {
  const r = await fetch(url, { headers: headers() });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.detail || ("HTTP " + r.status));
  return body;
}

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

const time = (ms) => new Date(ms).toISOString().replace("T", " ").replace("Z", "");

// An event's class: dropped by the lifecycle, failed somewhere, or applied.
function kind(e) {
  if (e.verdict !== "apply") return "dropped";
  const failed = e.destinations.some((d) => d.status === "dead" ||
    d.outcomes.some((o) => o.outcome === "dead"));
  return failed ? "failed" : "apply";
}

function leg(e) {
  const call = e.event.data && e.event.data.call;
  return (call && (call.leg_id || call.id)) || e.event.partitionkey || e.event.subject || "-";
}

function fateText(d) {
  const last = d.outcomes[d.outcomes.length - 1];
  let text = d.destination + ": " + d.status;
  if (d.reason) text += " (" + d.reason + ")";
  if (last) text += " → " + last.outcome + (last.status ? " " + last.status : "");
  return text;
}

let current = null;

function select(index) {
  if (!current) return;
  document.querySelectorAll("#chart .event").forEach((c) =>
    c.classList.toggle("selected", Number(c.dataset.index) === index));
  document.querySelectorAll("#events li").forEach((li, i) => li.classList.toggle("selected", i === index));
  const e = current.events[index];
  const detail = $("detail");
  detail.replaceChildren();
  detail.append(el("p", {}, time(e.received_at) + " · " + e.route + " · " + e.vendor));
  detail.append(el("p", { "data-testid": "detail-verdict" },
    "lifecycle: " + e.verdict + (e.reason ? " — " + e.reason : "")));
  detail.append(el("h3", {}, "Destinations"));
  const table = el("table", { class: "fates", "data-testid": "fates" });
  table.append(el("tr", {}, ""));
  table.firstChild.append(el("th", {}, "destination"), el("th", {}, "at intake"), el("th", {}, "attempts"));
  for (const d of e.destinations) {
    const row = el("tr");
    row.append(el("td", {}, d.destination));
    row.append(el("td", {}, d.status + (d.reason ? " (" + d.reason + ")" : "")));
    const attempts = d.outcomes.map((o) => "#" + o.attempt + " " + o.outcome +
      (o.status ? " " + o.status : "") + (o.detail ? " — " + o.detail : "")).join("\n");
    const cell = el("td", { class: d.outcomes.some((o) => o.outcome === "delivered") ? "ok" :
      (d.outcomes.some((o) => o.outcome === "dead") ? "bad" : "") }, attempts || "—");
    row.append(cell);
    table.append(row);
  }
  detail.append(table);
  detail.append(el("h3", {}, "Canonical event"));
  detail.append(el("pre", { "data-testid": "detail-event" }, JSON.stringify(e.event, null, 2)));
  detail.append(el("h3", {}, "Vendor payload (" + e.vendor + ")"));
  detail.append(el("pre", { "data-testid": "detail-payload" }, JSON.stringify(e.payload, null, 2)));
}

function draw(timeline) {
  current = timeline;
  const events = timeline.events;
  const others = timeline.partitionkeys.filter((k) => k !== timeline.id);
  $("title").textContent = timeline.id + " — " + events.length + " events" +
    (others.length ? " of " + others.join(", ") : "");
  const lanes = [...new Set(events.map(leg))];
  const W = 900, left = 150, right = 40, laneH = 54, top = 16;
  const H = top + lanes.length * laneH + 30;
  const t0 = Math.min(...events.map((e) => e.received_at));
  const t1 = Math.max(...events.map((e) => e.received_at));
  const span = Math.max(t1 - t0, 1);
  const x = (t) => left + (W - left - right) * (t - t0) / span;
  const chart = svg("svg", { viewBox: "0 0 " + W + " " + H, role: "img",
    "aria-label": "timeline of " + timeline.id, "data-testid": "timeline-svg" });
  lanes.forEach((name, i) => {
    const y = top + i * laneH;
    chart.append(svg("rect", { class: "lane", x: left, y: y + 4, width: W - left - right, height: laneH - 8, rx: 4 }));
    // Leg ids of one call share their start: the end tells them apart.
    const short = name.length > 16 ? "…" + name.slice(-15) : name;
    const label = svg("text", { class: "lane-label", x: 4, y: y + laneH / 2 + 4 }, "leg " + short);
    label.append(svg("title", {}, name));
    chart.append(label);
  });
  const axisY = top + lanes.length * laneH + 6;
  chart.append(svg("line", { class: "axis", x1: left, x2: W - right, y1: axisY, y2: axisY }));
  for (let i = 0; i <= 4; i++) {
    const t = t0 + span * i / 4;
    chart.append(svg("text", { class: "tick", x: x(t), y: axisY + 16, "text-anchor": i === 0 ? "start" : (i === 4 ? "end" : "middle") },
      new Date(t).toISOString().slice(11, 23)));
  }
  // Events at the same instant are spread a little so each can be clicked.
  const seen = new Map();
  events.forEach((e, index) => {
    const lane = lanes.indexOf(leg(e));
    const key = lane + ":" + Math.round(x(e.received_at) / 6);
    const n = seen.get(key) || 0;
    seen.set(key, n + 1);
    const cx = Math.min(x(e.received_at) + n * 12, W - right - 6);
    const cy = top + lane * laneH + laneH / 2;
    const dot = svg("circle", { class: "event " + kind(e), cx, cy, r: 7, "data-index": index, "data-testid": "event-dot" });
    dot.append(svg("title", {}, e.event.type + " · " + e.verdict + "\n" + e.destinations.map(fateText).join("\n")));
    dot.addEventListener("click", () => select(index));
    chart.append(dot);
    // Short labels, above and below in turn, so neighbours do not overwrite each other.
    const short = e.event.type.replace(/^call\./, "").replace(/^vendor\.[^.]+\./, "");
    const above = index % 2 === 0;
    if (n === 0) chart.append(svg("text", { class: "label", x: cx, y: above ? cy - 11 : cy + 19, "text-anchor": "middle" }, short));
  });
  $("chart").replaceChildren(chart);
  const list = $("events");
  list.replaceChildren();
  events.forEach((e, index) => {
    const li = el("li", { "data-testid": "event-row" });
    li.append(el("span", { "data-testid": "event-type" }, e.event.type));
    li.append(document.createTextNode(" · " + time(e.received_at) + " · " + e.vendor));
    const fates = e.verdict === "apply" ? e.destinations.map(fateText).join("; ") : "dropped: " + (e.reason || e.verdict);
    li.append(el("span", { class: "fate", "data-testid": "event-fates" }, fates));
    li.addEventListener("click", () => select(index));
    list.append(li);
  });
  if (events.length) select(0);
}

async function load(id) {
  try {
    status("loading " + id + "…");
    const timeline = await getJson("/admin/calls/" + encodeURIComponent(id));
    draw(timeline);
    status("call " + id + ": " + timeline.events.length + " events");
    history.replaceState(null, "", "?call=" + encodeURIComponent(id));
  } catch (e) {
    status(String(e.message || e), true);
  }
}

async function search(q) {
  try {
    const found = await getJson("/admin/calls?q=" + encodeURIComponent(q));
    const list = $("calls");
    list.replaceChildren();
    for (const c of found.calls) {
      const b = el("button", { type: "button", "data-testid": "call" }, c.partitionkey);
      b.append(el("small", {}, c.events + " events · " + c.vendors.join(", ")));
      b.addEventListener("click", () => load(c.partitionkey));
      const li = el("li");
      li.append(b);
      list.append(li);
    }
    status(found.calls.length + " calls match " + q, found.calls.length === 0);
    if (found.calls.length === 1) load(found.calls[0].partitionkey);
  } catch (e) {
    status(String(e.message || e), true);
  }
}

window.addEventListener("DOMContentLoaded", () => {
  $("token").value = sessionStorage.getItem("callgate-admin-token") || "";
  $("token").addEventListener("change", () => sessionStorage.setItem("callgate-admin-token", $("token").value.trim()));
  $("search-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = $("q").value.trim();
    if (q) search(q);
  });
  const call = new URLSearchParams(location.search).get("call");
  if (call) {
    $("q").value = call;
    load(call);
  }
});
