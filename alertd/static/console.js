// The desk console: plain JavaScript modules (no build step) on alertd's JSON API.
// The session is the HttpOnly cookie POST /api/v1/sessions sets; this code never sees a token.
import { TEXTS, levelText } from "/static/console-texts.js";
import { api, problemText } from "/static/console-api.js";
import { DeskMap } from "/static/console-map.js";

const $ = (id) => document.getElementById(id);
const state = { lang: localStorage.getItem("alertd.lang") || "ja", me: null, view: "now", boards: new Map(), pending: null, inFlight: new Set(),
  drill: { status: null, timers: new Set(), run: null, test: null, result: null, watched: new Set() } };
const deskMap = new DeskMap($("map"), (name) => togglePicked(name));

function t(key, vars) {
  let text = TEXTS[state.lang][key] ?? TEXTS.ja[key] ?? key;
  for (const [k, v] of Object.entries(vars || {})) text = text.replaceAll("{" + k + "}", v);
  return text;
}

// Punctuation follows the console's language: 「A、B（C）」 in Japanese, "A, B (C)" in English.
function joined(items) { return items.join(state.lang === "ja" ? "、" : ", "); }
function paren(text) { return state.lang === "ja" ? "（" + text + "）" : " (" + text + ")"; }

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat()) if (child !== null && child !== undefined) node.append(child);
  return node;
}

// ``text`` may be a function of the console's language: the message then follows a switch to
// English (or back) like everything else on the page.
function say(text, kind, detail) {
  state.message = typeof text === "function" ? { text: text, kind: kind, detail: detail } : null;
  if (typeof text === "function") text = text();
  const box = $("message");
  box.textContent = text;
  // The API's own words (English, for whoever supports the desk) stay one click away.
  if (detail && detail !== text) box.append(el("details", {}, el("summary", {}, t("problem_details")), el("p", { lang: "en" }, detail)));
  box.className = "message " + (kind || "error");
  box.hidden = !text;
}

// A refusal in the console's language: the problem's type (and field) picks a catalog text;
// the API's detail is kept under 詳細. ``context`` tells apart the same field in two forms.
function problemMessage(data, context) {
  const slug = String((data && data.type) || "").split("/").pop().replaceAll("-", "_");
  const field = (data && data.field) || "";
  if (slug === "unknown_area" && field === "districts" && Array.isArray(data.unknown) && data.unknown.length) {
    const names = joined(data.unknown.map((u) => (state.lang === "ja" ? "「" + u.name + "」" : "\u201c" + u.name + "\u201d") +
      (u.suggestions && u.suggestions.length ? t("problem_similar", { names: joined(u.suggestions) }) : "")));
    return t("problem_unknown_districts", { names: names });
  }
  for (const key of ["problem_" + context + "_" + slug + "_" + field, "problem_" + context + "_" + slug,
                     "problem_" + slug + "_" + field, "problem_" + slug]) {
    if (TEXTS[state.lang][key]) return t(key);
  }
  return t("problem_other");
}

function sayProblem(data, context) {
  say(() => problemMessage(data, context || ""), "error", problemText(data));
}

// --- language -------------------------------------------------------------------------
function applyLanguage() {
  document.documentElement.lang = state.lang;
  for (const node of document.querySelectorAll("[data-t]")) node.textContent = t(node.dataset.t);
  for (const node of document.querySelectorAll("[data-t-label]")) node.setAttribute("aria-label", t(node.dataset.tLabel));
  const toggle = $("lang-toggle");
  toggle.textContent = state.lang === "ja" ? "English" : "日本語";
  toggle.lang = state.lang === "ja" ? "en" : "ja";
  document.title = t("title");
  mapHint();
  if (state.message) say(state.message.text, state.message.kind, state.message.detail);
  if (state.me) {
    renderWho(); refreshNow(); renderDrafts(); fillMunicipalities();
    // What is on screen follows the switch: the preview (without moving focus) and the history.
    if (state.pending && !$("preview").hidden) renderPreview(state.pending.body, state.pending.preview, false);
    if (state.view === "history") renderHistory();
    if (state.view === "drills") { renderDrills(); drawDrillRun(); }
    for (const board of document.querySelectorAll("div.board")) board.redraw?.();
  }
  banner();
}

$("lang-toggle").addEventListener("click", () => {
  state.lang = state.lang === "ja" ? "en" : "ja";
  localStorage.setItem("alertd.lang", state.lang);
  applyLanguage();
});

// --- signing in -------------------------------------------------------------------------
async function loadMe() {
  // probe: nobody signed in is a 200 {signed_in: false}, so a page load logs no 401 in the browser.
  const { status, data } = await api("GET", "/api/v1/sessions/current?probe=true");
  if (status !== 200 || data.signed_in === false) return showSignIn();
  state.me = data;
  $("signin-view").hidden = true;
  $("app-view").hidden = false;
  $("signout").hidden = false;
  renderWho();
  fillMunicipalities();
  deskMap.map.invalidateSize(); // the map was made while the page was hidden: measure it now
  await deskMap.showBase(data.jurisdiction.map((j) => j.code));
  show(state.view);
}

function renderWho() {
  $("who").textContent = t("signed_in_as", { user: state.me.username, issuer: state.me.issuer_name });
}

// A shared desk PC: whoever signs in next must find nothing of the last person's work — no
// typed districts or reason, no preview, no delivery board, no history, no message, no filter.
function resetDesk() {
  for (const source of state.boards.values()) source.close();
  state.boards.clear();
  for (const timer of state.drill.timers) clearTimeout(timer);
  state.drill = { status: null, timers: new Set(), run: null, test: null, result: null, watched: new Set() };
  state.pending = null;
  state.view = "now";
  for (const id of ["signin-form", "issue-form", "history-form", "drill-form", "test-form"]) $(id).reset();
  $("now-status").value = "Actual";
  $("preview").hidden = true;
  for (const id of ["preview-body", "issue-result", "drafts", "approval-result", "now-list", "history-list", "map-districts",
                    "drill-scenarios", "drill-run", "test-scope"]) {
    $(id).replaceChildren();
  }
  deskMap.clearPreview();
  deskMap.clearPickable();
  deskMap.showOrders({ features: [] });
  say("");
  banner();
}

function showSignIn() {
  state.me = null;
  resetDesk();
  $("signin-view").hidden = false;
  $("app-view").hidden = true;
  $("signout").hidden = true;
  $("who").textContent = "";
  $("username").focus();
}

$("signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = { username: $("username").value.trim(), password: $("password").value, otp: $("otp").value.trim() };
  const { status, data } = await api("POST", "/api/v1/sessions", body);
  $("password").value = "";
  $("otp").value = "";
  if (status !== 201) return sayProblem(data, "signin");
  resetDesk();
  await loadMe();
});

$("signout").addEventListener("click", async () => {
  await api("DELETE", "/api/v1/sessions/current");
  showSignIn();
});

// --- views ----------------------------------------------------------------------------
function show(view) {
  state.view = view;
  for (const name of ["now", "issue", "approvals", "history", "drills"]) $(name + "-view").hidden = name !== view;
  for (const button of document.querySelectorAll("#tabs button")) {
    if (button.dataset.view === view) button.setAttribute("aria-current", "page");
    else button.removeAttribute("aria-current");
  }
  deskMap.clearPreview();
  refreshNow(); // the map always shows what stands now, whichever view is open
  if (view === "issue") pickableFor($("municipality").value);
  else deskMap.clearPickable();
  if (view === "approvals") renderDrafts();
  if (view === "history") renderHistory();
  if (view === "drills") renderDrills();
  mapHint();
  banner();
}

for (const button of document.querySelectorAll("#tabs button")) button.addEventListener("click", () => show(button.dataset.view));

function currentStatus() {
  if (state.view === "issue") return (document.querySelector("input[name=status]:checked") || {}).value || "Actual";
  if (state.view === "now") return $("now-status").value;
  if (state.view === "drills") return state.drill.status || "Exercise"; // nothing here is ever Actual
  return "Actual";
}

// Exercise and Test are unmistakable: a banner across the page whenever one is shown or prepared.
function banner() {
  const status = state.me ? currentStatus() : "Actual";
  const box = $("banner");
  box.hidden = status === "Actual";
  box.textContent = status === "Actual" ? "" : t("banner_" + status);
  document.body.dataset.status = status;
}

// --- now: what stands, with its deliveries ---------------------------------------------
$("now-status").addEventListener("change", () => { refreshNow(); banner(); });

// Alert id → the draft that lifts or cancels it, waiting for approval: the card says so and
// offers no second lift (pressing 解除 again made a duplicate draft).
async function pendingChanges() {
  const { status, data } = await api("GET", "/api/v1/drafts");
  const out = new Map();
  if (status !== 200) return out;
  for (const draft of data) {
    const p = draft.preview || {};
    if (p.action !== "lift" && p.msg_type !== "Cancel") continue;
    for (const id of p.lifts || []) out.set(id, { id: draft.id, kind: p.msg_type === "Cancel" ? "cancel" : "lift" });
  }
  return out;
}

async function refreshNow() {
  if (!state.me) return;
  const status = $("now-status").value;
  const [{ status: code, data }, pending] = await Promise.all([
    api("GET", "/api/v1/orders?status=" + encodeURIComponent(status)), pendingChanges()]);
  if (code === 401) return showSignIn();
  if (code !== 200) return sayProblem(data, "order");
  deskMap.showOrders(data, t("no_boundary"));
  const list = $("now-list");
  // An open delivery board survives the redraw (every 10 s, and after every action): the same
  // element, still fed by its stream, moves into the new card. Redrawing it empty made the
  // board vanish while deliveries were still retrying.
  const open = new Map([...list.querySelectorAll("div.board[data-board]")].map((b) => [b.dataset.board, b]));
  list.replaceChildren();
  if (!data.alerts.length) list.append(el("p", {}, t("none")));
  for (const alert of data.alerts) {
    const board = open.get(alert.alert_id) || el("div", { class: "board", id: "board-" + alert.alert_id, "data-board": alert.alert_id });
    const names = joined(alert.district_names);
    const waiting = pending.get(alert.alert_id);
    const busy = Boolean(waiting) || state.inFlight.has(alert.alert_id);
    list.append(el("article", { class: "card alert lv" + alert.level, "data-alert": alert.alert_id },
      el("h3", {}, el("span", { class: "swatch lv" + alert.level, "aria-hidden": "true" }), levelText(state.lang, alert.level)),
      el("p", {}, alert.municipality_name + (state.lang === "ja" ? "：" : ": ") + names + (alert.reason ? paren(alert.reason) : "")),
      alert.sent ? el("p", { class: "sent-at" }, t("issued_at") + " ", el("time", { datetime: alert.sent }, japanTime(alert.sent))) : null,
      waiting ? el("p", { class: "notice pending", "data-kind": waiting.kind }, t("change_waiting_" + waiting.kind, { id: waiting.id })) : null,
      el("div", { class: "buttons" },
        el("button", { type: "button", onclick: () => watch(alert.alert_id, board) }, t("deliveries")),
        el("button", { type: "button", class: "danger lift", disabled: busy, onclick: () => confirmLift(alert) }, t("lift")),
        el("button", { type: "button", class: "danger cancel", disabled: busy, onclick: () => confirmCancel(alert) }, t("cancel_order"))),
      board));
  }
}

// Nothing irreversible without a confirmation that names the districts. While its request is
// in flight the order's buttons stay disabled: a second press made a second draft.
function confirmThen(alert, text, yes, send, doneKey = "sent") {
  const opener = document.activeElement;
  $("confirm-text").textContent = text;
  $("confirm-yes").textContent = yes;
  const dialog = $("confirm");
  dialog.returnValue = "";
  dialog.showModal();
  dialog.addEventListener("close", async () => {
    // Escape or やめる: back where the officer was — the same button of the re-drawn card if the
    // list was refreshed meanwhile (every 10 s).
    const again = opener && !opener.isConnected && opener.className
      ? document.querySelector(`article[data-alert="${alert.alert_id}"] button.${opener.className.split(" ").pop()}`) : null;
    (again || opener)?.focus?.();
    if (dialog.returnValue !== "yes") return;
    state.inFlight.add(alert.alert_id);
    for (const button of document.querySelectorAll(`article[data-alert="${alert.alert_id}"] button.danger`)) button.disabled = true;
    let answer;
    try { answer = await send(); } finally { state.inFlight.delete(alert.alert_id); }
    const { status, data } = answer;
    if (status !== 202) { refreshNow(); return sayProblem(data, "order"); }
    say(() => data.state === "awaiting_approval" ? t("held") + paren(t("draft_id") + " " + data.id) : t(doneKey) + paren(t("alert_id") + " " + data.id), "ok");
    refreshNow();
  }, { once: true });
}

// The issuer's two-person rule (alertd's intake.needs_approval): a lift has the level of what it ends.
function liftNeedsApproval(alert) {
  const rule = state.me && state.me.approval;
  return Boolean(rule && (rule.status || []).includes(alert.status) && alert.level != null && alert.level >= rule.min_level);
}

function placesOf(alert) {
  const whole = alert.districts.length === 1 && alert.districts[0] === alert.municipality;
  return { whole: whole, names: whole ? t("whole") : joined(alert.district_names) };
}

// A lift names its districts: every one still under the order, ticked; untick those that stay.
function confirmLift(alert) {
  const where = placesOf(alert);
  const boxes = $("confirm-boxes");
  boxes.replaceChildren(...(where.whole ? [] : alert.district_names.map((name) =>
    el("label", {}, el("input", { type: "checkbox", class: "lift-pick", value: name, checked: true, onchange: describe }), " " + name))));
  $("confirm-choices").hidden = where.whole;
  const chosen = () => [...boxes.querySelectorAll("input.lift-pick:checked")].map((i) => i.value);
  function describe() {
    const names = where.whole ? where.names : joined(chosen());
    // Said before, not found out after: under the issuer's two-person rule the lift waits for an approver.
    $("confirm-text").textContent = t("lift_confirm", { muni: alert.municipality_name, level: levelText(state.lang, alert.level), names: names || "—" })
      + (liftNeedsApproval(alert) ? " " + t("lift_needs_approval") : "");
    $("confirm-yes").disabled = !where.whole && !chosen().length;
  }
  confirmThen(alert, "", t("confirm_lift"), () => api("POST", "/api/v1/evacuation-orders", {
    municipality: alert.municipality, level: alert.level, action: "lift", status: alert.status,
    districts: where.whole ? ["all"] : chosen(), reason: alert.reason || "解除", identifier: crypto.randomUUID() }), "lifted_ok");
  describe();
}

// 取消: the order was sent in error. Receivers are told so, and it ends everywhere it stood.
function confirmCancel(alert) {
  const vars = { muni: alert.municipality_name, level: levelText(state.lang, alert.level), names: placesOf(alert).names };
  $("confirm-choices").hidden = true;
  $("confirm-yes").disabled = false;
  confirmThen(alert, t("cancel_confirm", vars), t("confirm_cancel"), () => api("POST", "/api/v1/alerts", {
    msg_type: "Cancel", references: [alert.alert_id], status: alert.status, identifier: crypto.randomUUID() }), "cancelled_ok");
}

// The delivery board: per receiver, queued → delivered → confirmed (or failed), pushed by alertd
// as Server-Sent Events while it changes, until every delivery has ended.
function watch(alertId, container) {
  if (state.boards.has(alertId)) state.boards.get(alertId).close();
  const draw = (data) => {
    container.lastDeliveries = data; // redrawn from this when the language changes
    const rows = data.deliveries.filter((d) => d.adapter !== "feed");
    // Per adapter first (how far each kind of receiver got), then per receiver.
    const byAdapter = {};
    for (const d of rows) {
      const a = (byAdapter[d.adapter || "?"] ||= { planned: 0, confirmed: 0, failed: 0, retrying: 0 });
      a.planned += 1;
      if (d.state === "confirmed") a.confirmed += 1;
      if (d.state === "failed" || d.state === "expired") a.failed += 1;
      if ((d.state === "queued" || d.state === "sent") && d.attempts > 0) a.retrying += 1;
    }
    // Retries counted apart: "failed 0" while every delivery keeps failing read as no problem.
    const summary = el("ul", { class: "by-adapter" }, ...Object.entries(byAdapter).map(([adapter, n]) =>
      el("li", { "data-adapter": adapter }, adapterName(adapter) + ": " + t("outcome_text", n)
        + (n.retrying ? t("outcome_retrying", n) : ""))));
    // No receiver at all: said, not an empty table (the desk read an empty board as nothing wrong).
    if (!rows.length) { container.replaceChildren(el("p", { class: "notice no-deliveries" }, t("board_empty"))); return; }
    container.replaceChildren(summary, el("table", { class: "deliveries" },
      el("caption", {}, t("deliveries") + " — " + t("alert_id") + " " + alertId),
      el("thead", {}, el("tr", {}, ...["receiver", "adapter", "state", "attempts", "error"].map((k) => el("th", { scope: "col", class: k }, t(k))))),
      el("tbody", {}, ...rows.map((d) => el("tr", { "data-subscriber": d.subscriber, "data-state": d.state },
        el("td", { class: "receiver" }, d.subscriber), el("td", { class: "adapter", "data-adapter": d.adapter || "" }, adapterName(d.adapter)),
        // "queued" after a failed attempt is a retry waiting its turn, not a delivery at rest.
        el("td", { class: "state " + d.state }, t(d.state === "sent" ? "sent_state"
          : d.state === "queued" && d.attempts > 0 ? "retry_state" : d.state)),
        el("td", { class: "attempts" }, String(d.attempts)), el("td", { class: "error" }, errorCell(d.last_error)))))));
  };
  container.redraw = () => { if (container.lastDeliveries) draw(container.lastDeliveries); };
  const path = "/api/v1/alerts/" + encodeURIComponent(alertId) + "/deliveries";
  const forget = (handle) => { if (state.boards.get(alertId) === handle) state.boards.delete(alertId); };
  // A browser keeps at most 6 connections to alertd, and every open stream holds one as long as a
  // delivery retries: beyond a few live boards (a drill's steps), the rest are read every 2 s, so
  // the console's own requests never wait behind them.
  if ([...state.boards.values()].filter((b) => b instanceof EventSource).length >= LIVE_STREAMS) {
    const handle = { closed: false, close() { this.closed = true; } };
    state.boards.set(alertId, handle);
    const tick = async () => {
      if (handle.closed || !state.me) return forget(handle);
      const { status, data } = await api("GET", path);
      if (handle.closed) return forget(handle);
      if (status !== 200) { forget(handle); container.replaceChildren(el("p", {}, problemMessage(data, ""))); return; }
      draw(data);
      if (allFinal(data.deliveries)) return forget(handle);
      setTimeout(tick, 2000);
    };
    tick();
    return;
  }
  const source = new EventSource(path + "/events");
  state.boards.set(alertId, source);
  source.addEventListener("deliveries", (event) => draw(JSON.parse(event.data)));
  source.addEventListener("end", () => { source.close(); forget(source); });
  source.addEventListener("error", async () => {
    if (source.readyState !== EventSource.CLOSED) return; // a break: the browser reconnects by itself
    forget(source);
    const { status, data } = await api("GET", path);
    if (status === 200) draw(data);
    else container.replaceChildren(el("p", {}, problemMessage(data, "")));
  });
}

const LIVE_STREAMS = 3;
// As alertd.board_stream._ended: every receiver's delivery final, and the feed's publish gone out or failed.
function allFinal(rows) {
  return rows.every((r) => r.adapter === "feed" ? !["queued", "sent"].includes(r.state)
    : ["confirmed", "failed", "expired", "superseded"].includes(r.state));
}

// A kind of receiver as the desk calls it: 防災行政無線, not "radio".
function adapterName(adapter) {
  return adapter ? t("adapter_" + adapter) : "";
}

// Why a delivery failed, as a desk officer reads it: the kind of trouble in the console's
// language. The receivers' errors are alertd's own English (for whoever supports the desk):
// they stay one click away, and in the cell's title.
function errorKind(raw) {
  const text = String(raw || "");
  const circuit = text.match(/^not sent yet: the receiver failed (\d+) times in a row(?: \(last: ([\s\S]*)\))?/);
  if (circuit) return { key: "err_circuit", vars: { n: circuit[1] }, last: circuit[2] };
  if (/MQTT broker|no PUBACK|MQTT publish/.test(text)) return { key: "err_broker" };
  if (/refused the login|refused every recipient|not a valid URL|is not an? (?:mqtt|smtp):|names no publishable topic|does not take the address/.test(text)) {
    return { key: "err_config" };
  }
  const http = text.match(/\bHTTP ([45]\d\d)\b/);
  if (http) return { key: http[1][0] === "4" ? "err_http4" : "err_http5", vars: { code: http[1] } };
  if (/DNSError|Name or service not known|nodename nor servname|name resolution|getaddrinfo|No address associated/i.test(text)) return { key: "err_dns" };
  if (/no answer|timed? ?out|timeout/i.test(text)) return { key: "err_timeout" };
  if (/refused|Cannot connect|Connect call failed|unreachable/i.test(text)) return { key: "err_refused" };
  return { key: "err_other" };
}

function explainError(raw) {
  const kind = errorKind(raw);
  let text = t(kind.key, kind.vars);
  if (kind.last) {
    const last = errorKind(kind.last);
    if (last.key !== "err_other") text += t("err_last", { what: t(last.key + "_short", last.vars) });
  }
  return text;
}

function errorCell(raw) {
  if (!raw) return "";
  return [el("span", { class: "err-text", title: raw, "data-kind": errorKind(raw).key }, explainError(raw)),
    el("details", { class: "raw-error" }, el("summary", {}, t("raw_error")), el("code", { lang: "en" }, raw))];
}

// --- issue: the guided form, the preview, then send or submit for approval -------------
// Filled at sign-in and again on a language switch (「すべての市区町村」 stayed Japanese), keeping the choices.
function fillMunicipalities() {
  const history = $("history-municipality").value, chosen = $("municipality").value;
  $("history-municipality").replaceChildren(el("option", { value: "" }, t("all_munis")),
    ...state.me.municipalities.map((m) => el("option", { value: m.code }, m.name)));
  $("history-municipality").value = history;
  const select = $("municipality");
  select.replaceChildren(...state.me.municipalities.map((m) => el("option", { value: m.code }, m.name + paren(m.code))));
  if (chosen) select.value = chosen;
  select.disabled = state.me.municipalities.length === 1; // a town's desk issues for itself only
}

$("municipality").addEventListener("change", () => pickableFor($("municipality").value));
for (const input of document.querySelectorAll("input[name=status]")) input.addEventListener("change", banner);

// The hint under the map says what the map can do here: only the issue view picks on it, and
// only districts with a boundary of their own (it said "click the map" where nothing could be).
function mapHint() {
  const pick = state.view === "issue" ? (state.pickable ? t("map_hint_pick") : t("map_hint_type")) : "";
  $("map-hint").textContent = t("map_hint") + pick;
}

async function pickableFor(muni) {
  const names = await deskMap.showPickable(muni);
  state.pickable = names.length;
  mapHint();
  const box = $("map-districts");
  box.replaceChildren();
  if (!names.length) { box.append(el("p", { class: "hint" }, t("no_pick"))); return; }
  box.append(el("p", { class: "hint" }, t("pick")));
  for (const name of names) {
    const id = "pick-" + name;
    box.append(el("label", {}, el("input", { type: "checkbox", id: id, value: name, class: "pick",
      onchange: () => deskMap.markPicked(picked()) }), " " + name));
  }
}

function picked() {
  return [...document.querySelectorAll("input.pick:checked")].map((i) => i.value);
}

function togglePicked(name) {
  const box = [...document.querySelectorAll("input.pick")].find((i) => i.value === name);
  if (!box) return;
  box.checked = !box.checked;
  deskMap.markPicked(picked());
}

function order() {
  const typed = $("typed").value.split(/[,、，・\s]+/).map((s) => s.trim()).filter(Boolean);
  const districts = $("whole").checked ? ["all"] : [...new Set([...picked(), ...typed])];
  const body = {
    municipality: $("municipality").value,
    level: Number((document.querySelector("input[name=level]:checked") || {}).value),
    action: document.querySelector("input[name=action]:checked").value,
    status: (document.querySelector("input[name=status]:checked") || {}).value,
    reason: $("reason").value.trim(),
    districts: districts,
  };
  const shelters = $("shelters").value.split(/[,、，]+/).map((s) => s.trim()).filter(Boolean);
  if (shelters.length && body.action === "issue") body.shelters = shelters.map((name) => ({ name: name, status: "open" }));
  return body;
}

$("issue-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = order();
  const { status, data } = await api("POST", "/api/v1/evacuation-orders/preview", body);
  if (status !== 200) { $("preview").hidden = true; return sayProblem(data, "order"); }
  say("");
  state.pending = { body: body, needsApproval: data.needs_approval, preview: data };
  renderPreview(body, data);
});

// What an order would do, the same for the drafter's preview and the approver's card: an
// approver of a partial lift must see what stays in force (per district, before → after).
function previewParts(p, what) {
  const approval = what.action === "lift" ? "needs_approval_lift" : "needs_approval";
  const approximate = ((p.geojson && p.geojson.features) || []).filter((f) => f.properties && f.properties.approximate);
  return [
    what.needsApproval === undefined ? null : el("p", { class: what.needsApproval ? "notice" : "" }, what.needsApproval ? t(approval) : t("no_approval")),
    // Nobody would get it: said before sending, not found out from an empty board afterwards.
    p.deliveries === 0 ? el("p", { class: "message error no-receivers" }, t("no_receivers")) : null,
    el("dl", {},
      what.municipality ? [el("dt", {}, t("municipality")), el("dd", {}, what.municipality)] : null,
      el("dt", {}, t("level")), el("dd", {}, levelText(state.lang, what.level) + " — " + t("action_" + (what.action || "issue"))),
      el("dt", {}, t("kind_status")), el("dd", { class: "status-" + what.status }, t("status_" + what.status)),
      el("dt", {}, t("districts")), el("dd", { class: "preview-districts" }, joined(p.district_names || []),
        approximate.length ? el("p", { class: "hint no-outline" }, t("no_outline", { names: joined(approximate.map((f) => f.properties.name)) })) : null),
      el("dt", {}, t("receivers")), el("dd", { class: "preview-receivers" }, receiverList(p))),
    p.levels && p.levels.length ? el("table", { class: "levels" },
      el("caption", {}, t("before_after")),
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, t("district")), el("th", { scope: "col" }, t("level")))),
      el("tbody", {}, ...p.levels.map((l) => el("tr", {}, el("td", {}, l.name), el("td", {}, (l.level_before ?? "—") + " → " + (l.level_after ?? "—")))))) : null,
    el("h4", {}, t("texts")),
    el("div", { class: "preview-texts" }, ...previewTexts(p)),
    el("h4", {}, t("radio")),
    el("pre", { class: "preview-radio", lang: "ja" }, p.radio_script || ""),
  ];
}

// Every language the receivers will get (ja, en, zh, ko, やさしい日本語), as alertd renders it for
// them; a draft held before alertd said so has only its CAP blocks (ja-JP, en-US).
const LANGUAGES = { ja: ["日本語", "ja"], en: ["English", "en"], zh: ["中文", "zh-Hans"], ko: ["한국어", "ko"], "ja-easy": ["やさしい日本語", "ja"] };

function previewTexts(p) {
  const rendered = Object.entries(p.texts_by_language || {});
  if (rendered.length) {
    return rendered.map(([lang, text]) => el("section", { class: "text", "data-lang": lang, lang: (LANGUAGES[lang] || [lang, lang])[1] },
      el("h5", { lang: state.lang }, (LANGUAGES[lang] || [lang])[0]), el("strong", {}, text.headline || ""), el("p", {}, text.body || "")));
  }
  return Object.entries(p.texts || {}).map(([lang, text]) => el("div", { class: "text", lang: lang },
    el("strong", {}, text.headline || ""), el("p", {}, text.description || "")));
}

// Who it reaches, by name: the count first, the names below (folded away when there are many).
function receiverList(p) {
  const count = el("span", { class: "receiver-count" }, String(p.deliveries));
  const receivers = p.receivers || [];
  if (!receivers.length) return count;
  const items = el("ul", { class: "receiver-names" }, ...receivers.map((r) => el("li", { "data-receiver": r.id },
    r.name + " — " + adapterName(r.adapter) +
    (r.languages.length ? paren(r.languages.map((l) => (LANGUAGES[l] || [l])[0]).join(state.lang === "ja" ? "・" : ", ")) : ""))));
  if (receivers.length <= 5) return [count, items];
  return [count, el("details", { class: "receiver-more" }, el("summary", {}, t("show_receivers", { n: receivers.length })), items)];
}

function renderPreview(body, preview, focus = true) {
  deskMap.showPreview(preview.geojson, body.level);
  $("preview-body").replaceChildren(...previewParts(preview, {
    needsApproval: preview.needs_approval, municipality: $("municipality").selectedOptions[0].textContent,
    level: body.level, action: body.action, status: body.status }).filter((part) => part !== null));
  // The ids the page has always had, for people's bookmarks of the layout and for the tests.
  $("preview-body").querySelector(".preview-districts").id = "preview-districts";
  $("preview-body").querySelector(".preview-receivers").id = "preview-receivers";
  $("preview-body").querySelector(".preview-texts").id = "preview-texts";
  $("preview-body").querySelector(".preview-radio").id = "preview-radio";
  const send = $("send");
  send.textContent = preview.needs_approval ? t("submit") : t("send");
  $("preview").hidden = false;
  if (focus) $("preview").focus();
}

$("back").addEventListener("click", () => { $("preview").hidden = true; deskMap.clearPreview(); $("typed").focus(); });

$("send").addEventListener("click", () => {
  if (!state.pending) return;
  const { body, preview } = state.pending;
  // Level 4 and above sent at once (no second person will look at it): said back, by level and
  // districts, before it goes — as a lift and a 取消 are.
  if (body.level >= 4 && !preview.needs_approval) {
    return confirmAction(t("send_confirm", orderWords(body, preview)), t("send"), send);
  }
  send();
});

// What a confirmation names: the town, the districts, the level, issue or lift, and the status.
function orderWords(body, p) {
  const muni = (state.me.municipalities.find((m) => m.code === body.municipality) || {}).name || body.municipality;
  return { muni: muni, names: joined(p.district_names || []), level: levelText(state.lang, body.level),
           action: t("verb_" + (body.action || "issue")), status: t("status_" + body.status) };
}

// After a send the form is empty again: a filled form invited sending the same order twice.
function resetIssueForm() {
  $("issue-form").reset();
  deskMap.markPicked([]);
  deskMap.clearPreview();
  pickableFor($("municipality").value);
  banner();
}

async function send() {
  if (!state.pending) return;
  const body = { ...state.pending.body, identifier: crypto.randomUUID() };
  $("send").disabled = true;
  const { status, data } = await api("POST", "/api/v1/evacuation-orders", body);
  $("send").disabled = false;
  if (status !== 202) return sayProblem(data, "order");
  state.pending = null;
  $("preview").hidden = true;
  resetIssueForm();
  // 現在の発令 shows what the officer just sent: a drill sent from here appears there, not Actual only.
  $("now-status").value = body.status;
  const result = $("issue-result");
  if (data.state === "awaiting_approval") {
    say(() => t("held") + paren(t("draft_id") + " " + data.id), "ok");
    result.replaceChildren();
  } else {
    say(() => t("sent") + paren(t("alert_id") + " " + data.id), "ok");
    const board = el("div", { class: "board" });
    result.replaceChildren(board);
    watch(data.id, board);
  }
}

// --- approvals ---------------------------------------------------------------------------
// "user:sato" is the audit trail's name; the desk reads "sato". Times are the town's (JST).
function personOf(actor) { return String(actor || "").replace(/^(user|issuer):/, ""); }

// 2026-12-01 12:29 JST in both languages: 01/12/2026 read as January 12th.
function japanTime(iso) {
  const parts = Object.fromEntries(new Intl.DateTimeFormat("en-CA", { timeZone: "Asia/Tokyo", year: "numeric", month: "2-digit",
    day: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23" }).formatToParts(new Date(iso)).map((x) => [x.type, x.value]));
  return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute} JST`;
}

async function renderDrafts() {
  if (!state.me) return;
  const { status, data } = await api("GET", "/api/v1/drafts");
  const box = $("drafts");
  if (status !== 200) { box.replaceChildren(el("p", {}, problemMessage(data, ""))); return; }
  box.replaceChildren();
  if (!data.length) box.append(el("p", {}, t("no_drafts")));
  for (const draft of data) {
    const p = draft.preview;
    const mine = draft.drafted_by === "user:" + state.me.username;
    const reason = el("input", { id: "reject-" + draft.id, maxlength: "500" });
    box.append(el("article", { class: "card draft", "data-draft": draft.id },
      el("h3", {}, el("span", { class: "swatch lv" + p.level, "aria-hidden": "true" }), levelText(state.lang, p.level) + " — " + t("action_" + (p.action || "issue"))),
      el("dl", {},
        el("dt", {}, t("drafted_by")), el("dd", {}, personOf(draft.drafted_by)),
        el("dt", {}, t("created")), el("dd", {}, el("time", { datetime: draft.created }, japanTime(draft.created)))),
      ...previewParts(p, { level: p.level, action: p.action, status: p.status }),
      mine ? el("p", { class: "notice" }, t("own_draft")) : null,
      el("div", { class: "buttons" },
        el("button", { type: "button", class: "primary", disabled: mine || !state.me.roles.includes("approver"),
                       onclick: () => approve(draft) }, t("approve")),
        el("label", { for: "reject-" + draft.id }, t("reject_reason")), reason,
        el("button", { type: "button", class: "danger", onclick: () => reject(draft, reason) }, t("reject")))));
    reason.required = true;
  }
  if (state.view === "approvals" && data.length) deskMap.showPreview(data[0].preview.geojson, data[0].preview.level);
}

// Approving sends at once: the dialog names what goes out, as the lift and 取消 dialogs do.
function approve(draft) {
  const p = draft.preview || {};
  const words = { names: joined(p.district_names || []), level: levelText(state.lang, p.level),
                  action: t("verb_" + (p.msg_type === "Cancel" ? "cancel" : p.action || "issue")), status: t("status_" + p.status),
                  who: personOf(draft.drafted_by) };
  confirmAction(t("approve_confirm", words), t("approve"), () => approveNow(draft));
}

async function approveNow(draft) {
  const { status, data } = await api("POST", "/api/v1/drafts/" + encodeURIComponent(draft.id) + "/approve");
  if (status !== 202) return sayProblem(data, "order");
  if (draft.preview && draft.preview.status) $("now-status").value = draft.preview.status;
  say(() => t("approved") + paren(t("alert_id") + " " + data.id), "ok");
  const board = el("div", { class: "board" });
  $("approval-result").replaceChildren(board);
  watch(data.id, board);
  renderDrafts();
  refreshNow();
}

async function reject(draft, input) {
  if (!input.value.trim()) { input.focus(); return say(() => t("reject_needs_reason")); }
  const { status, data } = await api("POST", "/api/v1/drafts/" + encodeURIComponent(draft.id) + "/reject", { reason: input.value.trim() });
  if (status !== 200) return sayProblem(data, "reject");
  say(() => t("rejected"), "ok");
  renderDrafts();
}

// --- history: past issuances, on the map and as a timeline, with their deliveries --------
function historyQuery(format) {
  const q = new URLSearchParams();
  for (const [key, id] of [["municipality", "history-municipality"], ["since", "history-since"], ["until", "history-until"], ["status", "history-status"]]) {
    if ($(id).value) q.set(key, $(id).value);
  }
  if (format) q.set("format", format);
  return "/api/v1/history?" + q.toString();
}

function kindText(row) {
  if (row.msg_type === "Cancel") return t("kind_cancel");
  if (row.kind === "shelter") return t("kind_shelter");
  return t(row.action === "lift" ? "kind_lift" : "kind_issue");
}

async function renderHistory() {
  if (!state.me) return;
  $("export-csv").href = historyQuery("csv");
  $("export-geojson").href = historyQuery("geojson");
  $("export-cap").href = historyQuery("cap");
  const { status, data } = await api("GET", historyQuery());
  const box = $("history-list");
  if (status !== 200) { box.replaceChildren(el("p", {}, problemMessage(data, ""))); return; }
  if (!data.length) { box.replaceChildren(el("p", {}, t("no_history"))); deskMap.clearPreview(); return; }
  const when = japanTime;
  box.replaceChildren(el("table", { class: "history" },
    el("thead", {}, el("tr", {}, ...["sent_at", "municipality", "what", "districts", "reason", "outcome"].map((k) => el("th", { scope: "col" }, t(k))))),
    el("tbody", {}, ...data.map((row) => el("tr", { "data-alert": row.alert_id, "data-status": row.status },
      el("td", {}, el("time", { datetime: row.sent }, when(row.sent))),
      el("td", {}, row.municipality_name),
      el("td", {}, (row.level ? levelText(state.lang, row.level) + " " : "") + kindText(row) + (row.status !== "Actual" ? " 【" + t("status_" + row.status) + "】" : "")),
      el("td", {}, joined(row.district_names)),
      el("td", {}, row.reason || ""),
      el("td", {}, t("outcome_text", row.deliveries)))))));
  const resp = await api("GET", historyQuery("geojson"));
  if (resp.status === 200) deskMap.showPreview(resp.data);
}

$("history-form").addEventListener("submit", (event) => { event.preventDefault(); renderHistory(); });

// --- drills and the transmission test: start one, watch its alerts on the delivery board ------
// A drill is Exercise and reaches only receivers that take drills; the transmission test is Test
// and reaches every receiver in scope. Neither is an order, so neither waits for approval.
async function renderDrills() {
  if (!state.me) return;
  const { status, data } = await api("GET", "/api/v1/drills");
  const box = $("drill-scenarios");
  if (status === 401) return showSignIn();
  if (status !== 200) { box.replaceChildren(el("p", {}, problemMessage(data, "drill"))); return; }
  const chosen = (document.querySelector("input[name=scenario]:checked") || {}).value;
  box.replaceChildren(...data.scenarios.map((s) => el("label", { class: "scenario" + (s.allowed ? "" : " not-allowed") },
    el("input", { type: "radio", name: "scenario", value: s.id, disabled: !s.allowed, checked: s.allowed && s.id === chosen }),
    " ", el("strong", {}, s.id), " — " + ((s.descriptions || {})[state.lang] || s.description) + " ",
    el("small", {}, paren(joined([t("drill_steps", { steps: s.steps, seconds: Math.round(s.duration_s) }),
      t("drill_scope", { names: joined(s.scope.map((p) => p.name)) })]))),
    s.allowed ? null : el("span", { class: "why-not" }, " " + t(s.national ? "drill_national" : "drill_not_allowed")))));
  if (!data.scenarios.some((s) => s.allowed)) box.append(el("p", {}, t("drill_none")));
  state.drill.scope = data.test_broadcast_scope;
  $("test-scope").textContent = data.test_broadcast_scope.length
    ? t("test_scope", { names: joined(data.test_broadcast_scope.map((p) => p.name)) }) : t("test_scope_all");
  if (data.running && (!state.drill.run || state.drill.run.id !== data.running.id)) followDrill(data.running);
}

$("drill-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const scenario = (document.querySelector("input[name=scenario]:checked") || {}).value;
  if (!scenario) return say(() => t("drill_pick"));
  const button = event.submitter || $("drill-form").querySelector("button");
  button.disabled = true;
  const { status, data } = await api("POST", "/api/v1/drills", { scenario: scenario, speed: Number($("drill-speed").value) });
  button.disabled = false;
  if (status !== 202) return sayProblem(data, "drill");
  say(() => t("drill_started", { id: data.id }), "ok");
  state.drill.status = "Exercise";
  $("now-status").value = "Exercise"; // 現在の発令 then shows the drill's orders too
  banner();
  followDrill(data);
});

function later(fn, ms) {
  const timer = setTimeout(() => { state.drill.timers.delete(timer); fn(); }, ms);
  state.drill.timers.add(timer);
}

// The run's steps, each with the boards of the alerts it sent, read again every second until it ends.
function followDrill(run) {
  state.drill.run = run;
  state.drill.test = null;
  state.drill.watched = new Set();
  $("drill-run").replaceChildren();
  drawDrillRun();
  document.querySelector(".panel").scrollTop = 0; // the run is shown above the forms
  const poll = async () => {
    if (!state.me || !state.drill.run || state.drill.run.id !== run.id) return;
    const { status, data } = await api("GET", "/api/v1/drills/" + encodeURIComponent(run.id));
    if (status === 200) { state.drill.run = data; drawDrillRun(); if (state.view === "drills") refreshNow(); }
    // A drill that stopped in error does not leave 「訓練を開始しました」 in green above its error.
    if (status === 200 && data.state === "error") say(() => t("drill_error", { id: run.id }), "error", data.error);
    if (status !== 200 || ["starting", "running"].includes(data.state)) later(poll, 1000);
  };
  later(poll, 300);
}

function drawDrillRun() {
  const box = $("drill-run");
  if (state.drill.test) return drawTest();
  const run = state.drill.run;
  if (!run) return;
  let card = box.querySelector("article.drill-run");
  if (!card || card.dataset.run !== run.id) {
    card = el("article", { class: "card drill-run", "data-run": run.id },
      el("h3", { class: "run-title" }), el("p", { class: "run-verdict", role: "status" }), el("ol", { class: "run-steps" }));
    box.replaceChildren(card);
  }
  card.dataset.state = run.state;
  card.querySelector(".run-title").textContent = t("drill_run", { title: run.scenario, id: run.id, state: t("drill_state_" + run.state) });
  // The title says passed or not in the console's language; the drill report's reasons (its own words) follow.
  const verdict = run.verdict ? (run.verdict.reasons || []).join(" / ") : (run.error || "");
  card.querySelector(".run-verdict").textContent = verdict;
  const list = card.querySelector(".run-steps");
  run.steps.forEach((step, i) => {
    let item = list.querySelector(`li[data-step="${i}"]`);
    if (!item) {
      item = el("li", { "data-step": String(i) }, el("h4", {}, step.name), el("p", { class: "step-error" }), el("div", { class: "step-boards" }));
      list.append(item);
    }
    item.querySelector(".step-error").textContent = step.error || (step.alert_ids.length || step.kind === "fault" || step.kind === "wait" ? "" : t("drill_waiting"));
    for (const alertId of step.alert_ids) {
      if (state.drill.watched.has(alertId)) continue;
      state.drill.watched.add(alertId);
      const board = el("div", { class: "board", id: "board-" + alertId });
      item.querySelector(".step-boards").append(board);
      watch(alertId, board);
    }
  });
}

function confirmAction(text, yes, action) {
  const opener = document.activeElement;
  $("confirm-text").textContent = text;
  $("confirm-yes").textContent = yes;
  $("confirm-yes").disabled = false;
  $("confirm-choices").hidden = true;
  const dialog = $("confirm");
  dialog.returnValue = "";
  dialog.showModal();
  dialog.addEventListener("close", () => {
    opener?.focus?.();
    if (dialog.returnValue === "yes") action();
  }, { once: true });
}

$("test-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const wait = Number($("test-wait").value);
  const scope = state.drill.scope || [];
  const names = scope.length ? joined(scope.map((p) => p.name)) : t("test_scope_all");
  confirmAction(t("test_confirm", { names: names }), t("test_confirm_yes"), async () => {
    const { status, data } = await api("POST", "/api/v1/test-broadcasts", { wait_s: wait });
    if (status !== 202) return sayProblem(data, "drill");
    say(() => t("test_started", { id: data.id }), "ok");
    state.drill.status = "Test";
    state.drill.run = null;
    state.drill.test = data;
    state.drill.result = null;
    state.drill.watched = new Set();
    $("drill-run").replaceChildren();
    banner();
    drawTest();
    document.querySelector(".panel").scrollTop = 0;
    const poll = async () => {
      if (!state.me || !state.drill.test || state.drill.test.id !== data.id) return;
      const answer = await api("GET", "/api/v1/test-broadcasts/" + encodeURIComponent(data.id));
      if (answer.status === 200) { state.drill.result = answer.data; drawTest(); }
      if (answer.status !== 200 || !answer.data.final) later(poll, 1000);
    };
    later(poll, 500);
  });
});

function drawTest() {
  const test = state.drill.test;
  const box = $("drill-run");
  let card = box.querySelector("article.test-run");
  if (!card || card.dataset.test !== test.id) {
    const board = el("div", { class: "board", id: "board-" + test.alert_id });
    card = el("article", { class: "card test-run", "data-test": test.id },
      el("h3", { class: "run-title" }), el("p", { class: "run-verdict", role: "status" }), board);
    box.replaceChildren(card);
    watch(test.alert_id, board);
  }
  const result = state.drill.result;
  card.dataset.final = result && result.final ? "yes" : "no";
  card.querySelector(".run-title").textContent = t("test_result", { id: test.id, state: t(result && result.final ? "test_final" : "test_pending") });
  const verdict = result ? testVerdict(result) : null;
  card.dataset.verdict = verdict ? verdict.key : "";
  const line = card.querySelector(".run-verdict");
  line.className = "run-verdict" + (verdict ? " " + verdict.key : "");
  line.replaceChildren(...(verdict ? [el("strong", { class: "verdict" }, t(verdict.key) + (verdict.reasons.length ? t("test_because", { reasons: joined(verdict.reasons) }) : "")),
    el("br"), t("test_summary", { no_receiver: 0, ...result.summary })] : []));
  card.querySelector(".test-towns")?.remove();
  if (result && (result.municipalities || []).length + (result.wide_receivers || []).length) card.insertBefore(testTowns(result), card.querySelector(".board"));
}

// The transmission test's verdict, as the published one (alertd.testbroadcast.verdict) counts
// it — in municipalities, a town as good as its worst receiver: a town that failed or has no
// receiver at all fails the test (a town with no receiver is never a pass: nobody there heard
// it); delivered but not confirmed is 要確認 (someone must check it reached the people).
function testVerdict(result) {
  const towns = result.municipalities || [];
  const count = (k) => towns.filter((m) => m.result === k).length;
  const wide = (result.wide_receivers || []).flatMap((w) => w.receivers);
  const failed = count("failed") + (result.final ? count("pending") : 0);
  const wideFailed = wide.filter((r) => r.result === "failed" || (result.final && r.result === "pending")).length;
  const noReceiver = count("no receiver");
  const unconfirmed = count("unconfirmed") + wide.filter((r) => r.result === "unconfirmed").length;
  const reasons = [];
  if (failed) reasons.push(t("test_reason_failed", { n: failed }));
  if (noReceiver) reasons.push(t("test_reason_no_receiver", { n: noReceiver }));
  if (wideFailed) reasons.push(t("test_reason_wide", { n: wideFailed }));
  if (unconfirmed) reasons.push(t("test_reason_unconfirmed", { n: unconfirmed }));
  if (failed || noReceiver || wideFailed) return { key: "test_verdict_fail", reasons: reasons };
  if (!result.final) return { key: "test_verdict_pending", reasons: [] };
  if (unconfirmed) return { key: "test_verdict_check", reasons: reasons };
  return { key: "test_verdict_pass", reasons: [] };
}

function testTowns(result) {
  const who = (receivers) => receivers.length
    ? joined(receivers.map((r) => r.subscriber + paren(t("tres_" + r.result.replace(" ", "_"))))) : "—";
  const row = (name, res, receivers, wide) => el("tr", { "data-result": res, class: wide ? "wide" : null },
    el("td", {}, name), el("td", { class: "result " + res.replace(" ", "-") }, t("tres_" + res.replace(" ", "_"))), el("td", {}, who(receivers)));
  return el("table", { class: "test-towns" },
    el("caption", {}, t("test_towns")),
    el("thead", {}, el("tr", {}, ...["municipality", "test_result_col", "receivers_col"].map((k) => el("th", { scope: "col" }, t(k))))),
    el("tbody", {},
      ...(result.municipalities || []).map((m) => row(m.name, m.result, m.receivers, false)),
      ...(result.wide_receivers || []).map((w) => row(w.name, w.result, w.receivers, true))));
}

applyLanguage();
loadMe();
// What stands changes while the desk watches (another person approves, an order expires).
setInterval(() => { if (state.me && !document.hidden) refreshNow(); }, 10000);
window.alertdConsole = { refreshNow: refreshNow, renderDrafts: renderDrafts, renderDrills: renderDrills };
