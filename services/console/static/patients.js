// Patient list: every patient with state, last data, open alerts and the period's data days; filterable.

import { api, apiAll, enc } from "./api.js";
import { ago, CONDITIONS, h, label, problemText, SEVERITIES, STATES } from "./util.js";

const filters = { state: "", condition: "", q: "" };
const BILLING_ROWS = 100; // data days are fetched for the first rows shown only (one request per patient)

export function render(root, _params, ctx) {
  let alive = true;
  let rows = [];
  const openCounts = new Map();
  const dataDays = new Map();
  const status = h("p", { class: "muted", role: "status" }, "Loading…");
  const tbody = h("tbody");
  const sel = (id, text, values, key) => {
    const s = h("select", { id, onchange: () => { filters[key] = s.value; draw(); } },
      h("option", { value: "" }, "All"), values.map((v) => h("option", { value: v }, label(v))));
    s.value = filters[key];
    return h("div", {}, h("label", { for: id }, text), s);
  };
  const q = h("input", { id: "p-q", type: "search", value: filters.q, spellcheck: "false", oninput: () => { filters.q = q.value.trim(); draw(); } });
  root.append(
    h("h1", {}, "Patients"),
    h("div", { class: "toolbar", role: "search", "aria-label": "Filter patients" },
      sel("p-state", "State", STATES, "state"), sel("p-condition", "Condition", CONDITIONS, "condition"),
      h("div", {}, h("label", { for: "p-q" }, "Patient id starts with"), q)),
    status,
    h("div", { class: "table-wrap" }, h("table", { id: "patients-table" },
      h("caption", { class: "sr-only" }, "Patients"),
      h("thead", {}, h("tr", {}, ["Patient", "State", "Condition", "Last data", "Symptom index", "Open alerts", "Data days (period)"].map((t) => h("th", { scope: "col" }, t)))),
      tbody)));

  function visible() {
    return rows.filter((t) => (!filters.state || t.state === filters.state)
      && (!filters.condition || t.condition === filters.condition)
      && (!filters.q || t.patient_id.startsWith(filters.q)));
  }

  function draw() {
    if (!alive) return;
    const now = Date.now();
    const vis = visible();
    tbody.replaceChildren(...vis.map((t) => {
      const c = openCounts.get(t.patient_id);
      const total = c ? SEVERITIES.reduce((n, s) => n + (c[s] || 0), 0) : 0;
      const dd = dataDays.get(t.patient_id);
      return h("tr", { dataset: { patientId: t.patient_id } },
        h("td", {}, h("button", { type: "button", class: "linkbtn", onclick: () => ctx.navigate("patient", { id: t.patient_id }) }, t.patient_id)),
        h("td", {}, label(t.state)), h("td", {}, label(t.condition)),
        h("td", {}, (t.last_data_at || t.as_of) ? `${ago(t.last_data_at || t.as_of, now)} ago` : "—"),
        h("td", {}, t.symptom_index ?? "—"),
        h("td", {}, total ? `${total}${c.critical ? ` (${c.critical} critical)` : ""}` : "0"),
        h("td", {}, dd === undefined ? "…" : dd));
    }));
    status.textContent = `${vis.length} of ${rows.length} patient(s) shown.`;
    fetchDataDays(vis.slice(0, BILLING_ROWS));
  }

  let inFlight = 0;
  const queue = [];
  function fetchDataDays(list) {
    for (const t of list) if (!dataDays.has(t.patient_id) && !queue.includes(t.patient_id)) queue.push(t.patient_id);
    pump();
  }
  function pump() {
    while (alive && inFlight < 4 && queue.length) {
      const pid = queue.shift();
      inFlight++;
      api(`/patients/${enc(pid)}/billing`).then((b) => {
        const p = (b.periods || []).find((x) => !x.closed) || (b.periods || []).slice(-1)[0];
        dataDays.set(pid, p ? String(p.data_days) : "0");
      }).catch(() => dataDays.set(pid, "—")).finally(() => { inFlight--; if (!queue.length) draw(); else pump(); });
    }
  }

  async function load() {
    try {
      const [items, counts] = await Promise.all([
        apiAll("/trajectories?limit=500", { maxPages: 40 }),
        api("/alerts/counts?group_by=patient_id&status=open"),
      ]);
      rows = items;
      openCounts.clear();
      for (const c of counts.counts || []) openCounts.set(c.key, c.severity);
      draw();
    } catch (e) { if (alive) status.textContent = problemText(e); }
  }
  const unsubscribe = ctx.subscribe(() => { load(); });
  load();
  return () => { alive = false; unsubscribe(); };
}
