// The dashboard: Prometheus text from /metrics, parsed here (rates need two scrapes),
// beside counts the console computes from the store (/console/api/summary).
import { api, bytes, every, h, markUpdated, ms, request, svg } from "./core.js";

/** Prometheus text exposition -> Map(name -> [{labels, value}]). */
export function parsePrometheus(text) {
  const out = new Map();
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\S+)?$/);
    if (!m) continue;
    const labels = {};
    if (m[3]) {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
      let l;
      while ((l = re.exec(m[3]))) labels[l[1]] = l[2].replace(/\\n/g, "\n").replace(/\\(.)/g, "$1");
    }
    const v = m[4] === "+Inf" ? Infinity : m[4] === "-Inf" ? -Infinity : Number(m[4]);
    if (!out.has(m[1])) out.set(m[1], []);
    out.get(m[1]).push({ labels, value: v });
  }
  return out;
}

const sum = (samples, pred = () => true) =>
  (samples || []).filter((s) => pred(s.labels)).reduce((a, s) => a + s.value, 0);

function byLabel(samples, label) {
  const m = new Map();
  for (const s of samples || []) m.set(s.labels[label] ?? "", (m.get(s.labels[label] ?? "") || 0) + s.value);
  return m;
}

/** Cumulative buckets (summed over other labels) of histogram `name`: [[le, count]] by le. */
export function buckets(metrics, name, pred = () => true) {
  const m = new Map();
  for (const s of metrics.get(name + "_bucket") || []) {
    if (!pred(s.labels)) continue;
    const le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
    m.set(le, (m.get(le) || 0) + s.value);
  }
  return [...m.entries()].sort((a, b) => a[0] - b[0]);
}

/** histogram_quantile: linear interpolation inside the bucket holding the rank. */
export function quantile(q, bs) {
  if (!bs.length) return NaN;
  const total = bs[bs.length - 1][1];
  if (!total) return NaN;
  const rank = q * total;
  let prevLe = 0, prevCount = 0;
  for (const [le, count] of bs) {
    if (count >= rank) {
      if (le === Infinity) return prevLe;
      const inBucket = count - prevCount;
      return prevLe + (le - prevLe) * (inBucket ? (rank - prevCount) / inBucket : 1);
    }
    prevLe = le;
    prevCount = count;
  }
  return prevLe;
}

const minus = (a, b) => a.map(([le, c]) => [le, c - ((b.find((x) => x[0] === le) || [0, 0])[1])]);

function stat(id, label, value, unit = "") {
  return h("div", { class: "card", id }, h("div", { class: "muted" }, label),
    h("div", { class: "stat" }, h("span", { class: "v" }, value), unit ? h("small", {}, " " + unit) : null));
}

function spark(values) {
  const W = 300, H = 48, max = Math.max(1e-9, ...values);
  const pts = values.map((v, i) => `${(i / Math.max(1, values.length - 1)) * W},${H - 2 - (v / max) * (H - 6)}`);
  return svg("svg", { class: "spark", viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none" },
    svg("polyline", { points: pts.join(" ") }));
}

function table(id, head, rows) {
  return h("table", { id }, h("thead", {}, h("tr", {}, head.map((t, i) => h("th", { class: i ? "num" : "" }, t)))),
    h("tbody", {}, rows.length ? rows.map((r) => h("tr", {}, r.map((c, i) => h("td", { class: i ? "num" : "" }, c))))
      : h("tr", {}, h("td", { colspan: head.length, class: "muted" }, "none yet"))));
}

export async function dashboardPage(render) {
  const metricsBox = h("div", { id: "metrics" });
  const storeBox = h("div", { id: "store-summary", class: "grid" });
  const history = []; // inv/s samples
  let prev = null; // {t, metrics}

  async function scrape() {
    const r = await request("/metrics", { headers: { Accept: "text/plain" } });
    const type = r.headers.get("content-type") || "";
    if (!r.ok || type.includes("application/json")) {
      metricsBox.replaceChildren(h("div", { class: "unavailable", id: "metrics-unavailable" },
        "metrics unavailable: this server has no Prometheus /metrics endpoint ",
        `(GET /metrics answered ${r.status}). The store counts below come from the console's own summary.`));
      return;
    }
    const now = performance.now() / 1000;
    const m = parsePrometheus(await r.text());
    const invTotal = sum(m.get("golemish_invocations_total"));
    let rate = null, windowBuckets = null;
    const lat = buckets(m, "golemish_invocation_seconds");
    if (prev) {
      rate = Math.max(0, invTotal - sum(prev.m.get("golemish_invocations_total"))) / Math.max(1e-3, now - prev.t);
      const d = minus(lat, buckets(prev.m, "golemish_invocation_seconds"));
      if (d.length && d[d.length - 1][1] > 0) windowBuckets = d;
    }
    prev = { t: now, m };
    if (rate !== null) history.push(rate);
    if (history.length > 90) history.shift();
    const latB = windowBuckets || lat;
    const outcomes = byLabel(m.get("golemish_invocations_total"), "outcome");
    const recTotal = byLabel(m.get("golemish_recoveries_total"), "mode");
    const recSum = byLabel(m.get("golemish_recovery_seconds_sum"), "mode");
    const recCount = byLabel(m.get("golemish_recovery_seconds_count"), "mode");
    const workers = byLabel(m.get("golemish_workers"), "state");
    const snapCount = sum(m.get("golemish_snapshots_total"));
    const snapSec = sum(m.get("golemish_snapshot_seconds_sum")) / Math.max(1, sum(m.get("golemish_snapshot_seconds_count")));
    const fsync = buckets(m, "golemish_fsync_seconds");
    const batch = sum(m.get("golemish_commit_batch_entries_sum")) / Math.max(1, sum(m.get("golemish_commit_batch_entries_count")));
    metricsBox.replaceChildren(
      h("div", { class: "grid" },
        h("div", { class: "card", id: "m-rate" }, h("div", { class: "muted" }, "invocations per second"),
          h("div", { class: "stat" }, rate === null ? "…" : rate.toFixed(1),
            h("small", {}, ` · ${invTotal} in all`)), history.length > 1 ? spark(history) : null),
        h("div", { class: "card", id: "m-latency" }, h("div", { class: "muted" },
          `invocation latency ${windowBuckets ? "(last 2 s)" : "(since start)"}`),
          h("div", { class: "stat" }, h("span", { id: "m-p50" }, ms(quantile(0.5, latB))), h("small", {}, " p50")),
          h("div", {}, `p90 ${ms(quantile(0.9, latB))} · p99 `, h("span", { id: "m-p99" }, ms(quantile(0.99, latB))))),
        stat("m-snapshots", "snapshots", String(snapCount),
          `${bytes(sum(m.get("golemish_snapshot_bytes_total")))} written, ${ms(snapSec)} each`),
        stat("m-workers", "workers in memory", String(workers.get("resident") ?? 0),
          `resident · ${workers.get("evicted") ?? 0} evicted`),
        stat("m-pending", "waiting", String(sum(m.get("golemish_pending_promises"))),
          `promises · ${sum(m.get("golemish_pending_timers"))} timers`),
        stat("m-commit", "commits", fsync.length ? ms(quantile(0.99, fsync)) : "—",
          `fsync p99 · ${batch ? batch.toFixed(1) : "—"} entries per batch`)),
      h("div", { class: "grid spaced" },
        h("div", { class: "card" }, h("h3", {}, "Invocations by outcome"),
          table("m-outcomes", ["outcome", "count"], [...outcomes].map(([k, v]) => [k, v]))),
        h("div", { class: "card" }, h("h3", {}, "Recoveries by mode"),
          table("m-recoveries", ["mode", "count", "mean time"], [...recTotal].map(([k, v]) =>
            [k, v, recCount.get(k) ? ms(recSum.get(k) / recCount.get(k)) : "—"])))));
  }

  async function summary() {
    const s = await api("/console/api/summary");
    const statuses = Object.entries(s.workers_by_status).map(([k, v]) => `${v} ${k}`).join(", ") || "none";
    storeBox.replaceChildren(
      stat("s-workers", "workers", String(s.workers), statuses),
      stat("s-resident", "loaded in this server", String(s.resident), "workers"),
      stat("s-oplog", "oplog entries", String(s.oplog_entries)),
      stat("s-snapshots", "snapshots kept", String(s.snapshots_kept), bytes(s.snapshot_stored_bytes) + " stored"),
      stat("s-promises", "promises pending", String(s.promises.pending || 0), `${s.promises.completed || 0} completed`),
      stat("s-components", "component versions", String(s.components)));
  }

  async function tick() {
    await Promise.all([scrape(), summary()]);
    markUpdated();
  }

  render(h("h2", {}, "Dashboard"),
    h("h3", {}, "Metrics (/metrics)"), metricsBox,
    h("h3", { class: "spaced" }, "Store"), storeBox);
  await tick();
  every(2000, tick);
}
