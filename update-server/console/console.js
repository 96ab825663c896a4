// update-server console: a single-page application on the admin API (the same routes the
// worker-release CLI uses). No framework, no build step, no inline code (the page's
// Content-Security-Policy forbids it). The token lives in sessionStorage (this tab only) and is
// sent as `Authorization: Bearer`, never in a URL. Everything shown is built with DOM nodes and
// textContent, never innerHTML, so nothing the server stores can inject markup.
"use strict";

const TOKEN_KEY = "update-server-console-token";
let session = null; // {name, role, may_act} of GET /api/admin/session

// ---- helpers ------------------------------------------------------------------------------

function $(id) { return document.getElementById(id); }

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function table(id, headings, rows) {
  return el("table", { id },
    el("thead", {}, el("tr", {}, headings.map((h) => el("th", { text: h })))),
    el("tbody", {}, rows));
}

class ApiFailure extends Error {
  constructor(status, reason, message) {
    super(message);
    this.status = status;
    this.reason = reason;
  }
  describe() { return `${this.status} ${this.reason}: ${this.message}`; }
}

async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + (sessionStorage.getItem(TOKEN_KEY) || "") };
  const init = { method, headers, credentials: "omit", cache: "no-store", redirect: "error" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiFailure(0, "unreachable", `the server did not answer (${error.message})`);
  }
  let data = null;
  try { data = await response.json(); } catch (_) { data = null; }
  if (!response.ok) {
    throw new ApiFailure(response.status, (data && data.reason) || "http_" + response.status,
      (data && data.error) || response.statusText || "request refused");
  }
  return data;
}

function showError(failure) {
  const box = $("error");
  box.textContent = failure instanceof ApiFailure ? failure.describe() : String(failure);
  box.hidden = false;
  if (failure instanceof ApiFailure && failure.status === 401) logout("the server no longer accepts this token: " + failure.describe());
}

function showNotice(text) {
  $("error").hidden = true;
  const box = $("notice");
  box.textContent = text;
  box.hidden = false;
}

function clearMessages() {
  $("error").hidden = true;
  $("notice").hidden = true;
}

// ---- log in / out -------------------------------------------------------------------------

async function login(event) {
  event.preventDefault();
  const token = $("token").value.trim();
  $("login-error").hidden = true;
  sessionStorage.setItem(TOKEN_KEY, token);
  $("token").value = "";
  await start();
}

async function start() {
  if (!sessionStorage.getItem(TOKEN_KEY)) { showLogin(); return; }
  try {
    session = await api("GET", "/api/admin/session");
  } catch (failure) {
    logout(failure instanceof ApiFailure && failure.status === 401
      ? "This token is not accepted (" + failure.describe() + ")."
      : "Cannot log in: " + (failure.describe ? failure.describe() : failure));
    return;
  }
  $("login").hidden = true;
  $("app").hidden = false;
  $("nav").hidden = false;
  $("who").textContent = `${session.name} (${session.role}${session.may_act ? "" : ", read-only"})`;
  document.body.dataset.role = session.role;
  if (!location.hash) location.hash = "#/channels";
  route();
}

function logout(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  session = null;
  showLogin();
  if (message) {
    $("login-error").textContent = message;
    $("login-error").hidden = false;
  }
}

function showLogin() {
  $("app").hidden = true;
  $("nav").hidden = true;
  $("login").hidden = false;
  $("view").replaceChildren();
  $("token").focus();
}

// ---- routing ------------------------------------------------------------------------------

function parseHash() {
  const [path, query] = location.hash.replace(/^#/, "").split("?");
  return { parts: path.split("/").filter(Boolean), params: new URLSearchParams(query || "") };
}

async function route() {
  if (!session) return;
  const { parts, params } = parseHash();
  const page = parts[0] || "channels";
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("active", link.getAttribute("href") === "#/" + (page === "channel" ? "channels" : page));
  }
  const views = { channels: channelsView, channel: channelView, fleet: fleetView, worker: workerView, failures: failuresView, audit: auditView };
  const view = views[page] || channelsView;
  try {
    const node = await view(parts.slice(1).map(decodeURIComponent), params);
    $("view").replaceChildren(node);
    $("view").dataset.page = page;
  } catch (failure) {
    showError(failure);
  }
}

// ---- channels and actions -----------------------------------------------------------------

async function channelsView() {
  const [status, listing, releases] = await Promise.all([
    api("GET", "/api/admin/status"),
    api("GET", "/api/admin/channels"),
    api("GET", "/api/admin/releases"),
  ]);
  const summaries = new Map(status.channels.map((c) => [c.channel, c]));
  const rows = listing.channels.map((c) => {
    const s = summaries.get(c.channel);
    const actions = session.may_act ? el("td", {},
      el("button", { type: "button", "data-action": "promote", "data-channel": c.channel, onclick: () => actionPanel("promote", c.channel, releases.releases) }, "Promote…"),
      " ",
      s && !s.halted ? el("button", { type: "button", class: "danger", "data-action": "halt", "data-channel": c.channel, onclick: () => actionPanel("halt", c.channel) }, "Halt…") : null,
      s && s.halted ? el("button", { type: "button", "data-action": "resume", "data-channel": c.channel, onclick: () => actionPanel("resume", c.channel) }, "Resume…") : null,
    ) : el("td", { class: "hint", text: "read-only" });
    return el("tr", { "data-channel": c.channel, class: s && s.halted ? "halted" : null },
      el("td", {}, el("a", { href: "#/channel/" + encodeURIComponent(c.channel), class: "progress-link", text: c.channel })),
      el("td", { class: "version", text: s ? s.version : "—" }),
      el("td", { class: "num percent", text: s ? s.percent + " %" : "—" }),
      // The rollout plan's wave (GET /api/admin/status `wave`): "2/4 soaking", with the plan,
      // workers in flight and the next step's time in the tooltip; "—" without a plan.
      el("td", { class: "wave", title: s && s.wave ? waveDetail(s.wave) : null,
        text: s && s.wave ? s.wave.number + "/" + s.wave.of + " " + s.wave.state : "—" }),
      el("td", { class: "state" }, s ? (s.halted
        ? [el("span", { class: "badge halted", text: "halted" }), " ", s.halt_reason]
        : el("span", { class: "badge live", text: "live" })) : "nothing promoted"),
      el("td", { class: "mono", text: s ? s.expires : "—" }),
      el("td", { class: "num", text: s ? String(s.serial) : "—" }),
      el("td", { class: "num", text: String(c.workers) }),
      actions);
  });
  return el("div", {},
    el("h2", { text: "Channels" }),
    table("channels-table", ["channel", "version", "rollout", "wave", "state", "statement expires", "serial", "workers", "actions"], rows),
    el("div", { id: "action-panel" }),
    el("h3", { text: "Releases" }),
    table("releases-table", ["version", "published", "complete", "trusted"], releases.releases.map((r) =>
      el("tr", {}, el("td", { text: r.version }), el("td", { class: "mono", text: r.published_at || "" }),
        el("td", { text: r.complete ? "yes" : "missing " + r.missing_artifacts.length + " artifact(s)" }),
        el("td", { text: r.untrusted ? "no: " + r.untrusted : "yes" })))));
}

// One line on a rollout plan: the plan, its current step, who is in flight, what comes next.
function waveDetail(wave) {
  const parts = ["plan " + wave.spec, "step " + wave.step,
    wave.in_flight + " in flight (max " + wave.max_in_flight + ")", wave.named + " named"];
  if (wave.next_step_at) parts.push("next step at " + wave.next_step_at);
  if (wave.window) parts.push("window " + wave.window);
  if (wave.waiting) parts.push(wave.waiting);
  return parts.join(", ");
}

// The form of one action, then a confirmation, then the admin API call.
function actionPanel(action, channel, releases) {
  clearMessages();
  const panel = $("action-panel");
  const fields = [];
  if (action === "promote") {
    fields.push(el("label", { for: "action-version", text: "version" }),
      el("select", { id: "action-version" }, (releases || []).map((r) => el("option", { value: r.version, text: r.version }))),
      el("label", { for: "action-percent", text: "rollout %" }),
      el("input", { id: "action-percent", type: "number", min: "1", max: "100", value: "100" }),
      el("label", { for: "action-override", text: "override the soak gate" }),
      el("input", { id: "action-override", type: "checkbox" }));
  }
  fields.push(el("label", { for: "action-reason", text: "reason" }),
    el("input", { id: "action-reason", type: "text", required: true, placeholder: "why (written to the audit log)" }));
  const form = el("form", { id: "action-form", "data-action": action },
    fields,
    el("button", { type: "submit", class: "primary", id: "action-submit" }, action[0].toUpperCase() + action.slice(1) + "…"),
    el("button", { type: "button", id: "action-cancel", onclick: () => panel.replaceChildren() }, "Cancel"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const reason = $("action-reason").value.trim();
    if (!reason) { showError("a reason is required: it goes to the audit log"); return; }
    let body = { reason };
    let summary = `${action} channel ${channel}`;
    if (action === "promote") {
      const percent = Number($("action-percent").value);
      body = { version: $("action-version").value, percent, override: $("action-override").checked, reason };
      summary = `promote ${body.version} on ${channel} to ${percent} %${body.override ? " (overriding the soak gate)" : ""}`;
    }
    const confirmation = el("div", { class: "confirm", id: "action-confirmation" },
      el("p", { text: `Really ${summary}? Reason: “${reason}”.` }),
      el("button", { type: "button", class: "danger", id: "action-confirm", onclick: () => perform(action, channel, body, summary) }, "Confirm"),
      " ",
      el("button", { type: "button", onclick: () => confirmation.remove() }, "Back"));
    $("action-confirmation")?.remove();
    panel.append(confirmation);
  });
  panel.replaceChildren(el("div", { class: "panel" }, el("h3", { text: `${action} ${channel}` }), form));
  $("action-reason").focus();
}

async function perform(action, channel, body, summary) {
  for (const button of document.querySelectorAll("#action-panel button")) button.disabled = true;
  try {
    await api("POST", `/api/admin/channels/${encodeURIComponent(channel)}/${action}`, body);
  } catch (failure) {
    for (const button of document.querySelectorAll("#action-panel button")) button.disabled = false;
    $("action-confirmation")?.remove();
    showError(failure instanceof ApiFailure ? new ApiFailure(failure.status, failure.reason, `${summary} refused: ${failure.message}`) : failure);
    return;
  }
  await route();
  showNotice(`done: ${summary}`);
}

// ---- a channel's rollout progress over time ------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "text") node.textContent = value;
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat(Infinity)) if (child) node.append(child);
  return node;
}

function shortTime(iso) { return iso.replace("T", " ").replace(/\.\d+Z$/, "Z"); }

// Workers per version as stacked step bands (a worker count holds until the next point), the
// channel's actions as vertical marks. Colours come from the style sheet (classes v0..v7).
function progressChart(history) {
  const width = 900, height = 320, left = 50, right = 20, top = 20, bottom = 40;
  const times = history.points.map((p) => Date.parse(p.at));
  const eventTimes = history.events.map((e) => Date.parse(e.at));
  const t0 = Math.min(...times, ...eventTimes);
  const t1 = Math.max(Math.max(...times, ...eventTimes), t0 + 1000);
  const totals = history.points.map((p) => Object.values(p.workers).reduce((a, b) => a + b, 0));
  const ymax = Math.max(1, ...totals);
  const x = (t) => left + ((t - t0) / (t1 - t0)) * (width - left - right);
  const y = (n) => height - bottom - (n / ymax) * (height - top - bottom);
  const bands = history.versions.map((version, k) => {
    const below = (p) => history.versions.slice(0, k).reduce((sum, v) => sum + (p.workers[v] || 0), 0);
    const upper = [], lower = [];
    history.points.forEach((p, i) => {
      const from = x(times[i]);
      const to = i + 1 < times.length ? x(times[i + 1]) : x(t1);
      const low = below(p), high = low + (p.workers[version] || 0);
      upper.push(`${from},${y(high)}`, `${to},${y(high)}`);
      lower.unshift(`${to},${y(low)}`, `${from},${y(low)}`); // walked back
    });
    return svg("polygon", { class: "band v" + (k % 8), "data-version": version, points: upper.concat(lower).join(" ") },
      svg("title", { text: version }));
  });
  const ticks = [];
  for (let n = 0; n <= ymax; n += Math.max(1, Math.ceil(ymax / 5))) {
    ticks.push(svg("line", { class: "grid", x1: left, x2: width - right, y1: y(n), y2: y(n) }),
      svg("text", { class: "axis", x: left - 6, y: y(n) + 4, "text-anchor": "end", text: String(n) }));
  }
  const marks = history.events.map((e, i) => {
    const at = x(eventTimes[i]);
    const label = e.kind + (e.percent !== null && e.percent !== undefined ? " " + e.percent + "%" : "");
    return svg("g", { class: "event " + e.kind, "data-kind": e.kind },
      svg("line", { x1: at, x2: at, y1: top, y2: height - bottom }),
      svg("text", { x: at + 3, y: top + 12 + (i % 4) * 13, text: label }),
      svg("title", { text: `${e.at} ${e.kind} ${e.version} by ${e.actor}: ${e.detail}` }));
  });
  const axis = [
    svg("line", { class: "axis-line", x1: left, x2: width - right, y1: y(0), y2: y(0) }),
    svg("text", { class: "axis", x: left, y: height - bottom + 18, text: shortTime(new Date(t0).toISOString()) }),
    svg("text", { class: "axis", x: width - right, y: height - bottom + 18, "text-anchor": "end", text: shortTime(new Date(t1).toISOString()) }),
    svg("text", { class: "axis", x: 8, y: top - 8, text: "workers" }),
  ];
  return svg("svg", { id: "progress-chart", viewBox: `0 0 ${width} ${height}`, width, height, role: "img",
    "aria-label": `workers of ${history.channel} per version over time` }, ticks, bands, marks, axis);
}

async function channelView(parts) {
  const channel = parts[0] || "";
  const history = await api("GET", `/api/admin/channels/${encodeURIComponent(channel)}/history`);
  const legend = el("ul", { id: "progress-legend", class: "legend" }, history.versions.map((v, k) =>
    el("li", {}, el("span", { class: "swatch v" + (k % 8) }), v)));
  return el("div", {},
    el("h2", { text: `Rollout progress of ${history.channel}` }),
    el("p", { class: "hint", text: `Workers per version over time, replayed from ${history.reports} update report(s)` +
      (history.truncated ? " (the newest only; older reports are not replayed)" : "") +
      "; the last point is the inventory now. Marks are the channel's promotions, halts and resumes." }),
    history.versions.length ? [progressChart(history), legend] : el("p", { id: "no-progress", text: "No worker follows this channel yet." }),
    el("h3", { text: "Workers per version" }),
    table("history-table", ["from", ...history.versions], history.points.map((p) =>
      el("tr", {}, el("td", { class: "mono", text: p.at }),
        history.versions.map((v) => el("td", { class: "num", text: String(p.workers[v] || 0) }))))),
    el("h3", { text: "Channel actions" }),
    table("history-events", ["at", "action", "version", "rollout", "by", "detail"], history.events.map((e) =>
      el("tr", { "data-kind": e.kind }, el("td", { class: "mono", text: e.at }), el("td", { text: e.kind }),
        el("td", { text: e.version }), el("td", { class: "num", text: e.percent === null ? "" : e.percent + " %" }),
        el("td", { text: e.actor }), el("td", { text: e.detail })))),
    el("p", {}, el("a", { href: "#/channels", text: "← channels" })));
}

// ---- fleet, workers, failures -------------------------------------------------------------

// The newest report of each worker, from the audit log (reports are its `report` entries).
async function lastReports() {
  const audit = await api("GET", "/api/admin/audit?kind=report&limit=1000");
  const byWorker = new Map();
  for (const entry of audit.entries) if (!byWorker.has(entry.actor)) byWorker.set(entry.actor, entry);
  return { byWorker, entries: audit.entries };
}

// The inventory is paged by the server (GET /api/admin/workers?offset=&limit=): the page shows
// one page and links to the others, so a fleet of any size stays browsable.
const WORKERS_PAGE = 50;

async function fleetView(_parts, params) {
  const offset = Math.max(0, Number.parseInt(params.get("offset") || "0", 10) || 0);
  const limit = Math.max(1, Number.parseInt(params.get("limit") || String(WORKERS_PAGE), 10) || WORKERS_PAGE);
  const [status, page, reports] = await Promise.all([
    api("GET", "/api/admin/status"),
    api("GET", `/api/admin/workers?offset=${offset}&limit=${limit}`),
    lastReports(),
  ]);
  const link = (to, id, text) => el("a", { id, href: `#/fleet?offset=${to}&limit=${limit}`, text });
  const first = page.workers.length ? page.offset + 1 : 0;
  const pager = el("p", { class: "pager", id: "fleet-pager" },
    page.offset > 0 ? link(Math.max(0, page.offset - page.limit), "fleet-prev", "← previous") : null,
    el("span", { id: "fleet-range", text: `workers ${first}–${page.offset + page.workers.length} of ${page.total}` }),
    page.next_offset !== null && page.next_offset !== undefined ? link(page.next_offset, "fleet-next", "next →") : null);
  return el("div", {},
    el("h2", { text: `Fleet (${status.workers_total} workers)` }),
    table("fleet-table", ["channel", "version", "workers", "stale"], status.fleet.map((f) =>
      el("tr", {}, el("td", { text: f.channel }), el("td", { text: f.version }),
        el("td", { class: "num", text: String(f.workers) }), el("td", { class: "num", text: String(f.stale) })))),
    el("h3", { text: "Workers" }),
    pager,
    table("workers-table", ["worker", "channel", "version", "platform", "last seen", "last outcome"], page.workers.map((w) => {
      const last = reports.byWorker.get(w.worker_id);
      return el("tr", { "data-worker": w.worker_id },
        el("td", {}, el("a", { href: "#/worker/" + encodeURIComponent(w.worker_id), text: w.worker_id })),
        el("td", { text: w.channel }), el("td", { text: w.version }), el("td", { text: w.platform }),
        el("td", { class: "mono", text: (w.last_seen || "") + (w.stale ? " (stale)" : "") }),
        el("td", { text: last ? last.detail : "no report" }));
    })));
}

async function workerView(parts) {
  const id = parts[0] || "";
  const [page, audit] = await Promise.all([
    api("GET", "/api/admin/workers?worker_id=" + encodeURIComponent(id)),
    api("GET", "/api/admin/audit?kind=report&limit=200&actor=" + encodeURIComponent(id)),
  ]);
  const worker = page.workers[0];
  const history = audit.entries;
  const facts = worker ? [["channel", worker.channel], ["version", worker.version], ["platform", worker.platform],
    ["last seen", (worker.last_seen || "") + (worker.stale ? " (stale)" : "")]] : [["inventory", "not in the inventory"]];
  return el("div", {},
    el("h2", { text: "Worker " + id }),
    el("dl", { id: "worker-facts" }, facts.map(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })])),
    el("h3", { text: "Reports (outcome, reason, versions, duration, correlation id)" }),
    table("worker-reports", ["at", "channel", "version", "report"], history.map((e) =>
      el("tr", {}, el("td", { class: "mono", text: e.at }), el("td", { text: e.channel }), el("td", { text: e.version }), el("td", { text: e.detail })))),
    el("p", {}, el("a", { href: "#/fleet", text: "← fleet" })));
}

async function failuresView() {
  const status = await api("GET", "/api/admin/status");
  return el("div", {},
    el("h2", { text: "Failures in the last hour, by reason" }),
    status.failures_last_hour.length === 0 ? el("p", { id: "no-failures", text: "No failed or rolled-back update in the last hour." }) : null,
    table("failures-table", ["channel", "version", "outcome", "reason", "workers"], status.failures_last_hour.map((f) =>
      el("tr", {}, el("td", { text: f.channel }), el("td", { text: f.version }), el("td", { text: f.outcome }),
        el("td", { text: f.reason || "—" }), el("td", { class: "num", text: String(f.count) })))));
}

// ---- audit log ----------------------------------------------------------------------------

// The filters are GET /api/admin/audit's own (channel, kind, actor, since, until), kept in the
// page's address (#/audit?...) so a filtered view can be reloaded or shared without the token.
const AUDIT_FILTERS = ["channel", "kind", "actor", "since", "until"];
const AUDIT_KINDS = ["promote", "halt", "resume", "rollback", "auto_halt", "resign", "publish", "root",
  "report", "channel_create", "channel_delete", "worker_forget", "worker_enroll", "enroll_token_create",
  "enroll_token_revoke"];

async function auditView(_parts, params) {
  const query = new URLSearchParams();
  for (const key of [...AUDIT_FILTERS, "limit"]) if (params.get(key)) query.set(key, params.get(key));
  if (!query.has("limit")) query.set("limit", "200");
  const audit = await api("GET", "/api/admin/audit?" + query.toString());
  const input = (name, placeholder, extra) => el("input", { id: "audit-" + name, name, type: "text", placeholder, value: params.get(name) || "", ...extra });
  const form = el("form", { id: "audit-filter" },
    el("label", { for: "audit-channel", text: "channel" }), input("channel", "any"),
    el("label", { for: "audit-kind", text: "action" }), input("kind", "promote, halt, report, …", { list: "audit-kinds" }),
    el("datalist", { id: "audit-kinds" }, AUDIT_KINDS.map((k) => el("option", { value: k }))),
    el("label", { for: "audit-actor", text: "actor" }), input("actor", "token name, auto-halt, worker id"),
    el("label", { for: "audit-since", text: "since" }), input("since", "2026-01-01T00:00:00Z"),
    el("label", { for: "audit-until", text: "until" }), input("until", "2026-12-31T23:59:59Z"),
    el("button", { type: "submit", id: "audit-apply" }, "Filter"),
    el("a", { href: "#/audit", id: "audit-clear", text: "clear" }));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    for (const name of AUDIT_FILTERS) {
      const value = $("audit-" + name).value.trim();
      if (value) next.set(name, value);
    }
    location.hash = "#/audit" + (next.toString() ? "?" + next.toString() : "");
  });
  return el("div", {},
    el("h2", { text: "Audit log" }),
    form,
    el("p", { class: "hint", id: "audit-count", text: `${audit.entries.length} entr${audit.entries.length === 1 ? "y" : "ies"} (newest first, at most ${query.get("limit")})` }),
    table("audit-table", ["at", "kind", "actor", "channel", "version", "detail"], audit.entries.map((e) =>
      el("tr", { "data-kind": e.kind },
        el("td", { class: "mono", text: e.at }), el("td", { text: e.kind }), el("td", { text: e.actor }),
        el("td", { text: e.channel }), el("td", { text: e.version }), el("td", { text: e.detail })))));
}

// ---- start --------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", () => logout("Logged out."));
  window.addEventListener("hashchange", () => { clearMessages(); route(); });
  start();
});
