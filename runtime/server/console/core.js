// Shared pieces of the console: API calls with the bearer token, DOM building that
// only ever inserts text (guest output and oplog text are never parsed as HTML),
// timers and streams that end when the page changes, and formatting.

const TOKEN_KEY = "golemish.token";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export const session = {
  token: sessionStorage.getItem(TOKEN_KEY) || "",
  onUnauthorized: null, // set by app.js: shows the token form
};

export function setToken(token) {
  session.token = token;
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export function authHeaders(extra = {}) {
  const headers = { ...extra };
  if (session.token) headers["Authorization"] = "Bearer " + session.token;
  return headers;
}

/** fetch() with the token; 401 asks for the token again. */
export async function request(path, opts = {}) {
  const headers = authHeaders(opts.headers || {});
  let body = opts.body;
  if (opts.json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(opts.json);
  }
  const r = await fetch(path, { method: opts.method || "GET", headers, body, signal: opts.signal });
  if (r.status === 401) {
    if (session.onUnauthorized) session.onUnauthorized(session.token ? "The server refused this token." : "");
    throw new ApiError(401, "unauthorized", "the server needs a bearer token");
  }
  return r;
}

/** A JSON API call: the parsed body, or ApiError with the server's one-line message. */
export async function api(path, opts = {}) {
  const r = await request(path, opts);
  const text = await r.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch (e) {
    body = null;
  }
  if (!r.ok) {
    const err = (body && body.error) || { code: "http", message: `${r.status} ${text.slice(0, 200)}` };
    throw new ApiError(r.status, err.code, err.message);
  }
  if (opts.withStatus) return { status: r.status, body };
  return body;
}

export function enc(s) {
  return encodeURIComponent(s);
}

export function workerPath(id) {
  const i = id.indexOf("/");
  return `/workers/${enc(id.slice(0, i))}/${enc(id.slice(i + 1))}`;
}

/** h("div", {class: "x", onclick: fn}, "text", child, [more]) — text stays text. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "value") el.value = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const SVG = "http://www.w3.org/2000/svg";
export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, String(v));
  }
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

// -- page lifetime: intervals and streams stop when the route changes --------------
const page = { timers: [], aborts: [] };

export function every(ms, fn) {
  page.timers.push(setInterval(() => fn().catch(showPollError), ms));
}

export function abortable() {
  const c = new AbortController();
  page.aborts.push(c);
  return c.signal;
}

export function endPage() {
  page.timers.forEach(clearInterval);
  page.aborts.forEach((c) => c.abort());
  page.timers = [];
  page.aborts = [];
}

function showPollError(e) {
  const s = document.getElementById("server-state");
  if (s && !(e instanceof ApiError && e.status === 401)) s.textContent = "update failed: " + e.message;
}

export function markUpdated() {
  const s = document.getElementById("server-state");
  if (s) s.textContent = "updated " + new Date().toLocaleTimeString();
}

/** Follow a server-sent event stream over fetch (EventSource cannot send the token). */
export async function followEvents(path, onEvent, signal) {
  const r = await request(path, { signal, headers: { Accept: "text/event-stream" } });
  if (!r.ok) throw new ApiError(r.status, "http", `${r.status} ${await r.text()}`);
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      const ev = { event: "message", data: "", id: null };
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue;
        const i = line.indexOf(":");
        const field = i < 0 ? line : line.slice(0, i);
        const val = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
        if (field === "event") ev.event = val;
        else if (field === "data") ev.data += (ev.data ? "\n" : "") + val;
        else if (field === "id") ev.id = val;
      }
      if (ev.data || ev.event !== "message") onEvent(ev);
    }
  }
}

// -- formatting -----------------------------------------------------------------------
export function bytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

export function ago(seconds) {
  if (!seconds) return "—";
  const d = Date.now() / 1000 - seconds;
  if (d < 60) return `${Math.max(0, Math.round(d))} s ago`;
  if (d < 3600) return `${Math.round(d / 60)} min ago`;
  if (d < 86400) return `${Math.round(d / 3600)} h ago`;
  return new Date(seconds * 1000).toLocaleString();
}

export function ms(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "—";
  if (seconds < 1e-3) return `${(seconds * 1e6).toFixed(0)} µs`;
  if (seconds < 1) return `${(seconds * 1e3).toFixed(seconds < 0.01 ? 2 : 1)} ms`;
  return `${seconds.toFixed(2)} s`;
}

export function badge(text, cls = text) {
  return h("span", { class: `badge ${cls}` }, text);
}

export function errorBox(e) {
  return h("div", { class: "result error" }, e.message || String(e));
}
