// The invoke form: a function chosen from the component's exports, its signature
// (WIT, or the core signature) shown, one input per parameter (WAVE values for a WIT
// component, numbers for core exports), and the outcome: the result, a suspension,
// or the server's one-line error.
import { api, errorBox, h, ms, workerPath, ApiError } from "./core.js";

function resultText(r) {
  if (r.value !== undefined) return JSON.stringify(r.value);
  if (!r.results || !r.results.length) return "(no result)";
  return r.results.map((x) => (typeof x.value === "string" ? x.value : JSON.stringify(x.value))).join(", ");
}

/** fns: the functions route's answer; worker(): the target id; done(r): after a call. */
export function invokeForm(fns, worker, done = async () => {}, extra = null) {
  const fnSel = h("select", { id: "invoke-function", "aria-label": "function" },
    fns.functions.map((f) => h("option", { value: f.name }, f.name)));
  const sig = h("code", { id: "invoke-signature" });
  const params = h("div", { class: "row params", id: "invoke-params" });
  const outcome = h("div", { id: "invoke-result" });
  const button = h("button", { class: "primary", type: "submit", id: "invoke-button" }, "Invoke");
  function showParams() {
    const f = fns.functions.find((x) => x.name === fnSel.value);
    sig.textContent = f ? f.signature : "";
    params.replaceChildren(...(f ? f.params : []).map((p, i) => h("label", {},
      `${p.name}: ${p.type}`, h("input", { name: `arg${i}`, class: "arg", "aria-label": p.name,
                                          placeholder: f.typed ? "WAVE value" : p.type }))));
  }
  fnSel.addEventListener("change", showParams);
  const form = h("form", { id: "invoke-form" },
    extra ? h("div", { class: "row" }, extra) : null,
    h("div", { class: "row" }, fnSel, sig), params, h("div", { class: "row" }, button,
      h("span", { class: "muted" }, fns.functions.some((f) => f.typed)
        ? "Arguments are WAVE values, e.g. 5, \"text\", {sku: \"apple\", qty: 2}, some(1), [1, 2]."
        : "Core exports: arguments are numbers.")),
    outcome);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    let id;
    try {
      id = worker();
    } catch (e) {
      outcome.replaceChildren(errorBox(e));
      return;
    }
    button.disabled = true;
    outcome.replaceChildren(h("div", { class: "result waiting" }, "running…"));
    const args = [...params.querySelectorAll("input.arg")].map((i) => i.value);
    let r = null;
    try {
      const res = await api(workerPath(id) + "/invoke", { method: "POST", withStatus: true,
                                                          json: { function: fnSel.value, args } });
      r = res.body;
      if (res.status === 202) {
        outcome.replaceChildren(h("div", { class: "result waiting" },
          r.promise ? ["suspended: waiting for promise ", h("a", { href: "#/promises" }, r.promise)]
            : `suspended: sleeping until ${new Date(r.until_ns / 1e6).toLocaleTimeString()}`,
          r.stdout ? h("pre", {}, r.stdout) : null));
      } else {
        outcome.replaceChildren(h("div", { class: "result" },
          h("div", {}, h("strong", {}, `${r.function} → `), h("span", { class: "mono", id: "invoke-value" }, resultText(r)),
            h("span", { class: "muted" }, ` on ${r.worker} at oplog index ${r.oplog_index}, ${ms(r.seconds)}`,
              r.deduplicated ? " (recorded result, deduplicated)" : "")),
          r.stdout ? h("pre", { class: "stdout" }, r.stdout) : null,
          r.stderr ? h("pre", { class: "error-line" }, r.stderr) : null));
      }
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) return;
      outcome.replaceChildren(errorBox(e));
    } finally {
      button.disabled = false;
    }
    await done(r, id);
  });
  showParams();
  return form;
}
