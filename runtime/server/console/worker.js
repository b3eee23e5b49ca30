// One worker: facts, actions (invoke with the WIT signature shown, interrupt, resume,
// snapshot, revert), live output, recovery, snapshots on a timeline against the oplog,
// and the oplog itself, paged, filtered by kind, searched, invocations folded.
import {
  api, ago, append, badge, bytes, enc, errorBox, every, followEvents, abortable, h, markUpdated,
  ms, svg, workerPath, ApiError,
} from "./core.js";
import { invokeForm } from "./invoke.js";

const PAGE = 50;
const KINDS = ["create", "invoke", "return", "failed", "host-call", "log", "snapshot", "effect",
  "atomic-begin", "atomic-end", "rewind", "revert", "update", "update-failed"];

export async function workerPage(id, render) {
  const base = workerPath(id);
  const cbase = "/console/api" + base;
  let info = await api(base);
  const fns = await api(`/console/api/components/${enc(info.component)}/functions?version=${info.version}`);

  // -- facts ------------------------------------------------------------------------
  const facts = h("dl", { class: "facts", id: "worker-facts" });
  const statusBadge = h("span", { id: "worker-status" });
  const recovery = h("div", { id: "recovery" });
  function showFacts(residency) {
    const res = residency[id];
    const resident = info.resident !== undefined ? info.resident : Boolean(res);
    statusBadge.replaceChildren(badge(info.status));
    const rows = [
      ["component", h("a", { href: `#/component/${enc(info.component)}?version=${info.version}` },
        `${info.component} v${info.version}`)],
      ["memory", resident ? badge("resident") : badge("evicted")],
      ["oplog", h("span", { id: "oplog-length" }, `${info.oplog_length} entries`,
        info.oplog_archived ? ` (${info.oplog_archived} archived)` : "")],
      ["invocations", info.invocations],
      ["snapshots", `${info.snapshots} kept, policy ${info.snapshot_policy}`],
      ["memory size", bytes(info.memory_bytes)],
      ["limits", `${bytes(info.memory_limit)}, ${info.time_limit} s per invocation`],
      ["created", ago(info.created_at)],
    ];
    if (info.suspended) rows.push(["waiting for", JSON.stringify(info.suspended)]);
    if (info.error) rows.push(["error", h("span", { class: "error-line" }, info.error)]);
    facts.replaceChildren(...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
    const rec = res && res.recovery;
    recovery.replaceChildren();
    append(recovery, [
      rec ? h("dl", { class: "facts" },
        h("dt", {}, "last"), h("dd", { id: "recovery-mode" }, `${rec.mode}, ${ago(rec.at)}`),
        h("dt", {}, "took"), h("dd", {}, ms(rec.seconds)),
        h("dt", {}, "from"), h("dd", {}, rec.snapshot_index ? `snapshot at ${rec.snapshot_index}` : "Create (full replay)"),
        h("dt", {}, "replayed"), h("dd", {}, `${rec.entries} entries, ${rec.replayed_invocations} invocations`),
        rec.fallbacks.length ? [h("dt", {}, "skipped"), h("dd", {}, rec.fallbacks.join("; "))] : null,
        h("dt", {}, "report"), h("dd", {}, rec.describe))
        : h("p", { class: "muted" }, resident ? "Loaded without a recovery report (created here)."
          : "Not loaded in this server: the next call recovers it."),
      info.last_recovery ? h("p", {}, h("strong", {}, "Crash repair on record: "), info.last_recovery) : null]);
  }

  // -- invoke ------------------------------------------------------------------------
  const invoke = invokeForm(fns, () => id, () => refresh(true));

  // -- other actions -----------------------------------------------------------------
  const actionOut = h("div", { id: "action-result" });
  async function action(label, fn) {
    actionOut.replaceChildren(h("div", { class: "result waiting" }, label + "…"));
    try {
      actionOut.replaceChildren(h("div", { class: "result" }, await fn()));
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) return;
      actionOut.replaceChildren(errorBox(e));
    }
    await refresh(true);
  }
  const revertTo = h("input", { type: "number", min: 1, id: "revert-index", placeholder: "oplog index",
                                class: "narrow" });
  const actions = h("div", { class: "row" },
    h("button", { id: "btn-interrupt", onclick: () => action("interrupting", async () => {
      const r = await api(base + "/interrupt", { method: "POST" });
      return r.abandoned ? `abandoned the pending invocation ${r.abandoned}` : "nothing was pending";
    }) }, "Interrupt"),
    h("button", { id: "btn-resume", onclick: () => action("resuming", async () => {
      const { status, body: r } = await api(base + "/resume", { method: "POST", withStatus: true });
      if (status === 202) return `resumed; waiting again (${r.promise ? "promise " + r.promise : "a durable sleep"})`;
      return r.recovery ? `resumed: ${r.recovery.mode}, ${r.recovery.entries} entries in ${ms(r.recovery.seconds)}`
        : "resumed (it was loaded already)";
    }) }, "Resume"),
    h("button", { id: "btn-snapshot", onclick: () => action("snapshotting", async () => {
      const r = await api(base + "/snapshot", { method: "POST", json: {} });
      return `snapshot at oplog index ${r.index}: ${r.changed_pages} changed pages, ${bytes(r.stored_bytes)} stored`;
    }) }, "Snapshot"),
    h("span", { class: "muted" }, "·"), revertTo,
    h("button", { id: "btn-revert", class: "danger", onclick: () => action("reverting", async () => {
      const to = Number(revertTo.value);
      if (!revertTo.value || !Number.isInteger(to)) throw new Error("give the oplog index to revert to");
      if (!confirm(`Revert ${id} to its state at oplog index ${to}? Later invocations are undone (kept in the oplog, void).`)) return "not reverted";
      const r = await api(base + "/revert", { method: "POST", json: { to_index: to } });
      return `reverted to oplog index ${r.target}: ${r.undone} invocation(s) undone` +
        (r.effects.length ? `; outside effects not undone: ${r.effects.join(", ")}` : "");
    }) }, "Revert"));

  // -- live output ------------------------------------------------------------------------
  const live = h("pre", { id: "live-output" });
  const liveState = h("span", { class: "muted", id: "live-state" }, "connecting…");
  const signal = abortable();
  (async () => {
    let from = Math.max(1, info.oplog_length - 400);
    while (!signal.aborted) {
      try {
        liveState.textContent = "following";
        await followEvents(`${base}/logs?follow=1&from=${from}`, (ev) => {
          if (ev.event !== "log") return;
          const c = JSON.parse(ev.data);
          from = c.index + 1;
          const stick = live.scrollTop + live.clientHeight >= live.scrollHeight - 4;
          live.append(h("span", { class: c.stream }, h("span", { class: "idx" }, `[${c.index}]`), c.text));
          if (!c.text.endsWith("\n")) live.append("\n");
          if (stick) live.scrollTop = live.scrollHeight;
        }, signal);
      } catch (e) {
        if (signal.aborted || (e instanceof ApiError && e.status === 401)) return;
        liveState.textContent = "reconnecting: " + e.message;
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  })();

  // -- snapshots timeline --------------------------------------------------------------------
  const timeline = h("div", { id: "timeline" });
  const snapTable = h("tbody");
  let snaps = [];
  let invocationStarts = [];
  function drawTimeline() {
    const n = Math.max(1, info.oplog_length);
    const W = 1000, x = (i) => 10 + ((i - 1) / Math.max(1, n - 1)) * (W - 20);
    const s = svg("svg", { class: "timeline", viewBox: `0 0 ${W} 64`, preserveAspectRatio: "none" });
    s.append(svg("rect", { class: "window", x: x(oplog.start), y: 14, height: 30,
                           width: Math.max(2, x(Math.min(n, oplog.start + PAGE - 1)) - x(oplog.start)) }));
    s.append(svg("line", { class: "axis", x1: 10, x2: W - 10, y1: 30, y2: 30 }));
    for (const i of invocationStarts) s.append(svg("line", { class: "inv", x1: x(i), x2: x(i), y1: 24, y2: 36 }));
    for (const sn of snaps) {
      const c = svg("circle", { class: "snap" + (sn.kept ? "" : " pruned"), cx: x(sn.index), cy: 30, r: 6,
        onclick: () => oplog.go(Math.max(1, sn.index - 5)) },
      svg("title", {}, `snapshot at ${sn.index}${sn.kept ? "" : " (pruned)"}: ${bytes(sn.stored_bytes)} stored`));
      s.append(c);
    }
    s.append(svg("text", { x: 10, y: 58 }, "1"));
    s.append(svg("text", { x: W - 10, y: 58, "text-anchor": "end" }, String(n)));
    timeline.replaceChildren(s);
    snapTable.replaceChildren(...snaps.slice().reverse().map((sn) => h("tr", { class: "snapshot-row" },
      h("td", { class: "num" }, h("a", { href: "#", onclick: (e) => { e.preventDefault(); oplog.go(Math.max(1, sn.index - 5)); } }, sn.index)),
      h("td", {}, sn.kept ? "kept" : "pruned"),
      h("td", { class: "num" }, bytes(sn.memory_size)),
      h("td", { class: "num" }, sn.changed_pages),
      h("td", { class: "num" }, bytes(sn.stored_bytes)),
      h("td", { class: "num" }, `${sn.duration_ms.toFixed(2)} ms`),
      h("td", {}, sn.tracker))));
    if (!snaps.length) snapTable.append(h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No snapshot yet.")));
  }

  // -- oplog -------------------------------------------------------------------------------
  const kindSel = h("select", { id: "oplog-kind", "aria-label": "entry kind" },
    h("option", { value: "" }, "every kind"), KINDS.map((k) => h("option", { value: k }, k)));
  const search = h("input", { id: "oplog-search", type: "search", placeholder: "search the oplog…" });
  const pageInfo = h("span", { class: "muted", id: "oplog-page" });
  const list = h("div", { class: "entries", id: "oplog" });
  const oplog = {
    start: Math.max(1, info.oplog_length - PAGE + 1),
    tail: true, // following the end while new entries arrive
    next: null,
    async go(start, tail = false) {
      this.start = Math.max(1, start);
      this.tail = tail;
      await this.load();
    },
    async load() {
      const q = new URLSearchParams({ start: this.start, limit: PAGE });
      if (kindSel.value) q.set("kind", kindSel.value);
      if (search.value.trim()) q.set("q", search.value.trim());
      const r = await api(`${cbase}/oplog?${q}`);
      this.next = r.next;
      const filtered = kindSel.value || search.value.trim();
      list.replaceChildren(...(filtered ? r.entries.map(entryRow) : fold(r.entries)));
      if (!r.entries.length) list.append(h("p", { class: "muted" }, filtered ? "No entry matches." : "No entries here."));
      const first = r.entries.length ? r.entries[0].index : this.start;
      const last = r.entries.length ? r.entries[r.entries.length - 1].index : this.start;
      pageInfo.textContent = filtered
        ? `${r.entries.length} matching entries from ${this.start}${r.next ? `; more from ${r.next}` : ""} (of ${r.last_index})`
        : `entries ${first}–${last} of ${r.last_index}`;
      drawTimeline();
    },
  };
  const nav = (label, idName, fn) => h("button", { id: idName, type: "button", onclick: () => fn().catch((e) => list.replaceChildren(errorBox(e))) }, label);
  const controls = h("div", { class: "filters" }, kindSel, search,
    nav("« first", "oplog-first", () => oplog.go(1)),
    nav("‹ prev", "oplog-prev", () => oplog.go(oplog.start - PAGE)),
    nav("next ›", "oplog-next", () => oplog.go(oplog.next || oplog.start + PAGE)),
    nav("last »", "oplog-last", () => oplog.go(info.oplog_length - PAGE + 1, true)),
    pageInfo);
  let searchTimer = null;
  const refilter = () => oplog.go(kindSel.value || search.value.trim() ? 1 : info.oplog_length - PAGE + 1,
    !(kindSel.value || search.value.trim()));
  kindSel.addEventListener("change", refilter);
  search.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => refilter().catch((e) => list.replaceChildren(errorBox(e))), 250);
  });

  async function loadSnapshots() {
    snaps = await api(cbase + "/snapshots");
    const starts = await api(`${cbase}/oplog?kind=invoke&limit=1000`);
    invocationStarts = starts.entries.map((e) => e.index);
  }

  let lastLength = info.oplog_length;
  async function refresh(force = false) {
    const [fresh, residency] = await Promise.all([api(base), api("/console/api/residency")]);
    info = fresh;
    showFacts(residency);
    if (force || info.oplog_length !== lastLength) {
      lastLength = info.oplog_length;
      await loadSnapshots();
      if (oplog.tail) oplog.start = Math.max(1, info.oplog_length - PAGE + 1);
      await oplog.load();
    }
    markUpdated();
  }

  render(
    h("h2", {}, id, " ", statusBadge),
    h("div", { class: "grid" },
      h("div", { class: "card" }, h("h3", {}, "Worker"), facts),
      h("div", { class: "card" }, h("h3", {}, "Recovery"), recovery)),
    h("div", { class: "card", id: "actions" }, h("h3", {}, "Invoke"), invoke,
      h("h3", { class: "spaced" }, "Actions"), actions, actionOut),
    h("div", { class: "card" }, h("h3", {}, "Live output ", liveState), live),
    h("div", { class: "card" }, h("h3", {}, "Snapshots against the oplog"),
      h("p", { class: "muted" }, "Ticks: invocations; dots: snapshots (hollow: pruned); shaded: the oplog page below. Click a dot to go there."),
      timeline,
      h("table", { id: "snapshots" }, h("thead", {}, h("tr", {}, ["Index", "", "Memory", "Changed pages",
        "Stored", "Took", "Tracker"].map((t) => h("th", {}, t)))), snapTable)),
    h("div", { class: "card" }, h("h3", {}, "Oplog"), controls, list));
  showFacts(await api("/console/api/residency"));
  await loadSnapshots();
  await oplog.load();
  every(2000, () => refresh(false));
}

/** One entry; a click shows every recorded field (decoded as the server sent it). */
function entryRow(e) {
  const { summary, ...fields } = e;
  const detail = h("pre", { class: "detail", hidden: true }, JSON.stringify(fields, null, 2));
  const row = h("div", { class: `entry k-${e.kind}`, dataset: { index: e.index }, title: "show every field" },
    h("span", { class: "idx" }, e.index), h("span", { class: "kind" }, e.kind),
    h("span", { class: "sum" }, summary || ""), detail);
  row.addEventListener("click", (ev) => {
    if (ev.target.closest("pre.detail")) return; // let people select text in it
    detail.hidden = !detail.hidden;
  });
  return row;
}

/** Entries with each invocation (invoke .. return/failed) folded into one <details>. */
function fold(entries) {
  const out = [];
  let group = null;
  const close = (end) => {
    const d = group.el;
    const head = group.start;
    const status = end ? end.kind : "open";
    if (end && end.kind === "failed") d.classList.add("failed");
    append(d.querySelector("summary"),
      [end ? (end.kind === "failed" ? ` ✗ failed: ${end.summary || ""}` : ` ${end.summary || "-> ()"}`)
        : " (still open on this page)",
        h("span", { class: "muted" }, ` · ${group.count} entries`)]);
    d.dataset.status = status;
    group = null;
    return head;
  };
  for (const e of entries) {
    if (e.kind === "invoke") {
      if (group) close(null);
      const el = h("details", { class: "inv", dataset: { index: e.index } },
        h("summary", {}, h("span", { class: "muted" }, `#${e.index} `), h("span", { class: "fn" }, e.summary)));
      el.append(entryRow(e));
      group = { el, start: e, count: 1 };
      out.push(el);
      continue;
    }
    if (group) {
      group.el.append(entryRow(e));
      group.count++;
      if (e.kind === "return" || e.kind === "failed") close(e);
      continue;
    }
    out.push(entryRow(e));
  }
  if (group) close(null);
  return out;
}
