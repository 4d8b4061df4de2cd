// Deskside console: live updates over server-sent events. Everything here writes text
// (textContent), never HTML from the server's event data; the one HTML fragment it
// inserts (a ticket's timeline) is rendered and escaped by the server's templates.
"use strict";

// The streams this page follows that are open right now, in `<body data-live>`: what
// happened before a stream opened is in the page as rendered, what happens after arrives
// on the stream (tests wait for it before they make something happen).
const live = new Set();
function showLive() {
  document.body.dataset.live = [...live].join(" ");
}

function follow(url, handlers) {
  const source = new EventSource(url);
  source.addEventListener("open", () => { live.add(url); showLive(); });
  source.addEventListener("error", () => { live.delete(url); showLive(); });
  for (const [name, fn] of Object.entries(handlers)) {
    source.addEventListener(name, (e) => fn(e, source));
  }
  return source;
}

function agentState(e) {
  const [id, state] = e.data.split(" ");
  const online = state === "online";
  document.querySelectorAll(`[data-agent="${CSS.escape(id)}"] .state, [data-agent-state="${CSS.escape(id)}"]`)
    .forEach((el) => {
      el.textContent = state;
      el.classList.toggle("online", online);
      el.classList.toggle("offline", !online);
    });
}

function agentStates() {
  follow("/events", { agent: agentState });
}

// One event stream per page: browsers keep few connections per host open.
function ticketTimeline(number) {
  const refresh = async () => {
    const r = await fetch(`/tickets/${number}/timeline`, { credentials: "same-origin" });
    if (!r.ok) return;
    const box = document.getElementById("timeline");
    if (box) box.innerHTML = await r.text();
    const notes = document.querySelectorAll("#timeline li.note").length;
    const count = document.getElementById("note-count");
    if (count) count.textContent = String(notes);
  };
  follow(`/events?ticket=${encodeURIComponent(number)}`, { ticket: refresh, stale: refresh, agent: agentState });
}

function jobLog(pre) {
  const state = document.getElementById("job-state");
  const links = document.getElementById("job-links");
  // The page already shows the lines so far; the stream starts from the beginning, so
  // start again with an empty log.
  let first = true;
  const add = (kind) => (e) => {
    if (first) { pre.textContent = ""; first = false; }
    const span = document.createElement("span");
    span.className = kind;
    span.textContent = e.data.endsWith("\n") ? e.data : e.data + (kind === "out" || kind === "err" ? "" : "\n");
    pre.appendChild(span);
    pre.scrollTop = pre.scrollHeight;
  };
  const handlers = {};
  for (const kind of ["out", "err", "info", "ok", "failed"]) handlers[kind] = add(kind);
  handlers.end = (e, source) => {
    source.close();
    live.delete(pre.dataset.events);
    showLive();
    if (state) state.textContent = "Finished.";
    if (links) {
      links.textContent = "";
      for (const line of e.data.split("\n").filter(Boolean)) {
        const [href, label] = line.split("|");
        if (!href.startsWith("/")) continue;
        const a = document.createElement("a");
        a.href = href;
        a.textContent = label;
        links.append(a, " ");
      }
    }
  };
  follow(pre.dataset.events, handlers);
}

document.addEventListener("DOMContentLoaded", () => {
  if (!document.getElementById("whoami")) return; // signed out
  const pre = document.getElementById("job-log");
  if (pre && pre.dataset.events) { jobLog(pre); return; }
  const ticket = document.body.dataset.ticket;
  if (ticket) ticketTimeline(ticket);
  else agentStates();
});
