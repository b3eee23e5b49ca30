// The console's router and its list pages: workers, promises, components.
// Pages are hash routes (#/workers, #/worker/C/N, #/promises, #/components,
// #/component/NAME, #/dashboard) so that the server serves one static shell.
import {
  api, ago, append, badge, bytes, endPage, enc, errorBox, every, h, markUpdated, session,
  setToken, ApiError,
} from "./core.js";
import { workerPage } from "./worker.js";
import { dashboardPage } from "./dashboard.js";
import { invokeForm } from "./invoke.js";

const view = () => document.getElementById("view");

function render(...nodes) {
  const v = view();
  v.replaceChildren();
  append(v, nodes);
}

// -- token ---------------------------------------------------------------------------
function tokenForm(message) {
  endPage();
  const input = h("input", { type: "password", id: "token-input", autocomplete: "off",
                             placeholder: "bearer token (golemish serve --token)" });
  const form = h("form", { class: "card token", id: "token-form" },
    h("h3", {}, "This server needs a token"),
    h("p", { class: "muted" }, "It was started with --token (or GOLEMISH_SERVER_TOKEN). ",
      "The token is kept in this tab's session storage and sent as Authorization: Bearer."),
    message ? h("p", { class: "error-line", id: "token-error" }, message) : null,
    input, h("button", { class: "primary", type: "submit" }, "Use token"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    setToken(input.value.trim());
    route();
  });
  render(form);
  input.focus();
}

session.onUnauthorized = (message) => tokenForm(message);

// -- workers --------------------------------------------------------------------------
const STATUSES = ["idle", "interrupted", "suspended", "failed"];

function recoveryCell(w, res) {
  const rec = res && res.recovery;
  if (rec) return h("span", { title: rec.describe }, `${rec.mode} · ${ago(rec.at)}`);
  if (w.last_recovery) return h("span", { title: w.last_recovery, class: "muted" }, "crash repaired");
  return h("span", { class: "muted" }, "—");
}

function residentCell(w, residency) {
  const resident = w.resident !== undefined ? w.resident : Boolean(residency[w.id]);
  return resident ? badge("resident") : badge("evicted");
}

async function workersPage(params) {
  const comps = await api("/components");
  const names = [...new Set(comps.map((c) => c.name))].sort();
  const f = {
    component: params.get("component") || "",
    status: params.get("status") || "",
    version: params.get("version") || "",
    name: params.get("name") || "",
  };
  const select = (id, label, options, value) => h("select", { id, "aria-label": label },
    h("option", { value: "" }, `any ${label}`),
    options.map((o) => h("option", { value: o, selected: o === value }, o)));
  const compSel = select("filter-component", "component", names, f.component);
  const statusSel = select("filter-status", "status", STATUSES, f.status);
  const version = h("input", { id: "filter-version", type: "number", min: 0, placeholder: "version",
                               value: f.version, class: "narrow" });
  const name = h("input", { id: "filter-name", placeholder: "name contains…", value: f.name });
  const tbody = h("tbody");
  const count = h("span", { class: "muted", id: "worker-count" });
  const apply = () => {
    const q = new URLSearchParams();
    if (compSel.value) q.set("component", compSel.value);
    if (statusSel.value) q.set("status", statusSel.value);
    if (version.value) q.set("version", version.value);
    if (name.value) q.set("name", name.value);
    history.replaceState(null, "", "#/workers" + (q.toString() ? "?" + q : ""));
    refresh().catch((e) => tbody.replaceChildren(h("tr", {}, h("td", { colspan: 9 }, errorBox(e)))));
  };
  [compSel, statusSel, version].forEach((el) => el.addEventListener("change", apply));
  name.addEventListener("input", apply);

  async function refresh() {
    const q = new URLSearchParams();
    if (compSel.value) q.set("component", compSel.value);
    if (statusSel.value) q.set("status", statusSel.value);
    if (version.value) q.set("version", version.value);
    const [workers, residency] = await Promise.all([
      api("/workers?" + q), api("/console/api/residency")]);
    const shown = workers.filter((w) => !name.value || w.id.includes(name.value));
    tbody.replaceChildren(...shown.map((w) => h("tr", { dataset: { worker: w.id } },
      h("td", {}, h("a", { href: "#/worker/" + w.id }, w.id)),
      h("td", {}, badge(w.status)),
      h("td", {}, h("a", { href: "#/component/" + enc(w.component) }, w.component)),
      h("td", { class: "num" }, "v" + w.version),
      h("td", {}, residentCell(w, residency)),
      h("td", { class: "num oplog-length" }, w.oplog_length),
      h("td", { class: "num" }, w.invocations),
      h("td", { class: "num" }, w.snapshots),
      h("td", {}, recoveryCell(w, residency[w.id])))));
    if (!shown.length) {
      tbody.append(h("tr", {}, h("td", { colspan: 9, class: "muted" },
        workers.length ? "No worker matches the filters." :
          "No workers yet: invoke a function of a component (golemish invoke COMPONENT/NAME FUNCTION).")));
    }
    count.textContent = `${shown.length} of ${workers.length} shown`;
    markUpdated();
  }

  render(h("h2", {}, "Workers"),
    h("div", { class: "card" },
      h("div", { class: "filters" }, compSel, statusSel, version, name, count),
      h("table", { id: "workers" },
        h("thead", {}, h("tr", {}, ["Worker", "Status", "Component", "Version", "Memory",
          "Oplog", "Invocations", "Snapshots", "Last recovery"].map((t, i) =>
          h("th", { class: [3, 5, 6, 7].includes(i) ? "num" : "" }, t)))),
        tbody)));
  await refresh();
  every(2000, refresh);
}

// -- promises -------------------------------------------------------------------------
async function promisesPage() {
  const showAll = h("input", { type: "checkbox", id: "show-completed" });
  const tbody = h("tbody");
  const outcome = h("div", { id: "promise-outcome" });
  let shownKey = "";

  async function complete(p, input, button) {
    button.disabled = true;
    try {
      const r = await api(`/promises/${enc(p.id)}/complete`, { method: "POST",
                                                               json: { data: input.value } });
      let text;
      if (r.status === "suspended") {
        text = `Completed ${p.id}; worker ${r.worker} resumed and is waiting again` +
          (r.next_promise ? ` (for promise ${r.next_promise})` : " (a durable sleep)");
      } else if (r.finished) {
        const res = r.finished.ok ? `returned ${JSON.stringify(r.finished.results.map((x) => x[1] ?? x.value ?? x))}`
          : `failed: ${r.finished.error}`;
        text = `Completed ${p.id}; worker ${r.worker} resumed: ${r.finished.function} ${res}`;
      } else {
        text = `Completed ${p.id}; worker ${r.worker} resumed`;
      }
      outcome.replaceChildren(h("div", { class: "result" }, text,
        r.stdout ? h("pre", { class: "stdout" }, r.stdout) : null,
        h("div", {}, h("a", { href: "#/worker/" + r.worker }, "open " + r.worker))));
    } catch (e) {
      outcome.replaceChildren(errorBox(e));
    }
    shownKey = "";
    await refresh();
  }

  async function refresh() {
    const all = await api("/promises");
    const rows = all.filter((p) => showAll.checked || p.state !== "completed");
    const key = JSON.stringify(rows.map((p) => [p.id, p.state])) + showAll.checked;
    markUpdated();
    if (key === shownKey) return; // keep what is being typed into the forms
    shownKey = key;
    tbody.replaceChildren(...rows.map((p) => {
      const input = h("input", { placeholder: "data, e.g. yes", "aria-label": "data for " + p.id,
                                 class: "promise-data" });
      const button = h("button", { class: "primary", type: "submit" }, "Complete");
      const form = h("form", { class: "row flush" }, input, button);
      form.addEventListener("submit", (ev) => {
        ev.preventDefault();
        complete(p, input, button);
      });
      return h("tr", { dataset: { promise: p.id } },
        h("td", { class: "mono" }, p.id),
        h("td", {}, h("a", { href: "#/worker/" + p.worker }, p.worker)),
        h("td", {}, badge(p.state)),
        h("td", {}, ago(p.created_at)),
        h("td", {}, p.state === "pending" ? form : h("span", { class: "muted" },
          "completed " + ago(p.completed_at))));
    }));
    if (!rows.length) {
      tbody.append(h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No promise is awaiting completion.")));
    }
  }
  showAll.addEventListener("change", refresh);
  render(h("h2", {}, "Promises"),
    h("div", { class: "card" },
      h("div", { class: "filters" }, h("label", {}, showAll, " show completed")),
      h("table", { id: "promises" },
        h("thead", {}, h("tr", {}, ["Promise", "Worker", "State", "Created", "Complete with"].map(
          (t) => h("th", {}, t)))), tbody),
      outcome));
  await refresh();
  every(2000, refresh);
}

// -- components ---------------------------------------------------------------------
async function componentsPage() {
  const comps = await api("/components");
  const byName = new Map();
  for (const c of comps) {
    if (!byName.has(c.name)) byName.set(c.name, []);
    byName.get(c.name).push(c);
  }
  const rows = [...byName.entries()].sort().map(([name, vs]) => {
    vs.sort((a, b) => a.version - b.version);
    const latest = vs[vs.length - 1];
    return h("tr", { dataset: { component: name } },
      h("td", {}, h("a", { href: "#/component/" + enc(name) }, name)),
      h("td", {}, vs.map((v) => "v" + v.version).join(", ")),
      h("td", {}, latest.kind || latest.model || "core"),
      h("td", {}, latest.wit ? "yes" : "—"),
      h("td", { class: "num" }, bytes(latest.size)),
      h("td", { class: "mono" }, (latest.hash || "").slice(0, 16)));
  });
  render(h("h2", {}, "Components"),
    h("div", { class: "card" }, h("table", { id: "components" },
      h("thead", {}, h("tr", {}, ["Component", "Versions", "Model", "WIT", "Size", "Hash"].map(
        (t, i) => h("th", { class: i === 4 ? "num" : "" }, t)))),
      h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 6, class: "muted" },
        "Nothing deployed yet (golemish deploy FILE.wasm --name NAME)."))))));
}

async function componentPage(name, params) {
  const all = (await api("/components")).filter((c) => c.name === name)
    .sort((a, b) => a.version - b.version);
  if (!all.length) throw new ApiError(404, "not-found", `no component ${name}`);
  const version = params.has("version") ? Number(params.get("version")) : all[all.length - 1].version;
  const [c, fns, workers] = await Promise.all([
    api(`/components/${enc(name)}?version=${version}`).catch(() => all.find((x) => x.version === version)),
    api(`/console/api/components/${enc(name)}/functions?version=${version}`),
    api(`/workers?component=${enc(name)}`)]);
  const latest = all[all.length - 1].version;
  const wname = h("input", { id: "new-worker-name", placeholder: "name, e.g. alice", "aria-label": "worker name" });
  const invoke = version !== latest ? h("p", { class: "muted" },
    `New workers start on the latest version, v${latest}.`) : invokeForm(fns, () => {
    if (!wname.value.trim()) throw new Error("give the worker a name");
    return `${name}/${wname.value.trim()}`;
  }, async (r, id) => {
    if (r) document.getElementById("invoke-result").append(h("div", {},
      h("a", { href: "#/worker/" + id, id: "open-worker" }, "open " + id)));
  }, h("label", { class: "mono" }, `worker ${name}/`, wname));
  const versions = h("div", { class: "row" }, "versions: ", all.map((v) => v.version === version
    ? badge("v" + v.version, "resident") : h("a", { href: `#/component/${enc(name)}?version=${v.version}` }, "v" + v.version)));
  render(h("h2", {}, `${name} v${version}`), versions,
    h("div", { class: "grid" },
      h("div", { class: "card" }, h("h3", {}, "Version"), h("dl", { class: "facts" },
        h("dt", {}, "hash"), h("dd", { class: "mono" }, c.hash || "—"),
        h("dt", {}, "size"), h("dd", {}, bytes(c.size)),
        h("dt", {}, "model"), h("dd", {}, c.kind || c.model || "core"),
        h("dt", {}, "stackful"), h("dd", {}, c.stackful ? "yes" : "no"),
        h("dt", {}, "HTTP allowed"), h("dd", {}, (c.http_allow || []).join(", ") || "nothing"))),
      h("div", { class: "card" }, h("h3", {}, "Functions"),
        h("ul", { id: "functions", class: "mono" }, fns.functions.map((f) => h("li", {}, f.signature)))),
      h("div", { class: "card" }, h("h3", {}, `Workers (${workers.filter((w) => w.version === version).length} on v${version})`),
        h("ul", {}, workers.map((w) => h("li", {}, h("a", { href: "#/worker/" + w.id }, w.id),
          ` v${w.version} `, badge(w.status)))))),
    h("div", { class: "card" }, h("h3", {}, "Invoke (creates the worker on first use)"), invoke),
    c.wit ? h("div", { class: "card" }, h("h3", {}, "WIT"), h("pre", { id: "wit" }, c.wit)) :
      h("div", { class: "card muted" }, "No WIT interface: core exports, invoked with numbers."),
    h("div", { class: "card" }, h("h3", {}, "Imports"),
      h("pre", {}, (c.imports || []).map((i) => `${i[0]}.${i[1]} ${i[3]}`).join("\n") || "none")));
}

// -- router -----------------------------------------------------------------------------
async function route() {
  endPage();
  const hash = location.hash.replace(/^#\/?/, "") || "workers";
  const [path, query = ""] = hash.split("?");
  const params = new URLSearchParams(query);
  const parts = path.split("/").map(decodeURIComponent);
  const pageName = parts[0] === "worker" ? "workers" : parts[0] === "component" ? "components" : parts[0];
  document.querySelectorAll("header nav a").forEach((a) =>
    a.classList.toggle("active", a.dataset.page === pageName));
  document.getElementById("forget-token").hidden = !session.token;
  try {
    if (parts[0] === "workers") await workersPage(params);
    else if (parts[0] === "worker" && parts.length >= 3) await workerPage(`${parts[1]}/${parts.slice(2).join("/")}`, render);
    else if (parts[0] === "promises") await promisesPage();
    else if (parts[0] === "components") await componentsPage();
    else if (parts[0] === "component" && parts[1]) await componentPage(parts[1], params);
    else if (parts[0] === "dashboard") await dashboardPage(render);
    else render(h("h2", {}, "Not found"), h("p", {}, "No such page: ", location.hash));
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return; // the token form is showing
    render(h("h2", {}, "Error"), errorBox(e));
  }
}

document.getElementById("forget-token").addEventListener("click", () => {
  setToken("");
  route();
});
window.addEventListener("hashchange", route);
route();
