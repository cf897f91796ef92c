// Inbox: open and acknowledged alerts, critical first then oldest first; counts; filters; live.

import { api, apiAll, enc } from "./api.js";
import { ago, CONDITIONS, h, KINDS, label, problemText, SEV_RANK, SEVERITIES, sevBadge, when } from "./util.js";

// The newest data point: last_data_at, else the trajectory's as_of (the event time it was scored to).
const lastData = (t) => t.last_data_at || t.as_of;
const filters = { kind: "", severity: "", member: "", condition: "", status: "" }; // kept across views in memory

export function render(root, _params, ctx) {
  const alerts = new Map();
  const traj = new Map(); // patient_id -> trajectory summary (condition, state, last_data_at)
  let memberPatients = null; // Set of patient ids for the member filter, or null
  const fresh = new Set();
  let alive = true;

  const countsList = h("ul", { class: "counts", "aria-label": "Open and acknowledged alerts by severity" });
  const status = h("p", { class: "muted", role: "status" }, "Loading…");
  const tbody = h("tbody");
  const table = h("table", { id: "inbox-table" },
    h("caption", { class: "sr-only" }, "Alerts needing attention, critical first, then oldest first"),
    h("thead", {}, h("tr", {},
      ["Severity", "Alert", "Patient", "Kind", "Status", "Open for", "Since last data", "Condition"].map((t) => h("th", { scope: "col" }, t)))),
    tbody);

  const select = (id, text, values, key) => {
    const s = h("select", { id, onchange: () => { filters[key] = s.value; draw(); } },
      h("option", { value: "" }, "All"), values.map((v) => h("option", { value: v }, label(v))));
    s.value = filters[key];
    return h("div", {}, h("label", { for: id }, text), s);
  };
  const memberInput = h("input", { id: "f-member", type: "text", value: filters.member, size: 14, spellcheck: "false" });
  const memberForm = h("form", { class: "row", onsubmit: (ev) => { ev.preventDefault(); setMember(memberInput.value.trim()); } },
    h("div", {}, h("label", { for: "f-member" }, "Care-team member"), memberInput),
    h("button", { type: "submit", class: "secondary" }, "Apply"),
    h("button", { type: "button", class: "secondary", onclick: () => { memberInput.value = ctx.member(); setMember(ctx.member()); } }, "Mine"));

  root.append(
    h("h1", {}, "Inbox"),
    countsList,
    h("div", { class: "toolbar", role: "search", "aria-label": "Filter alerts" },
      select("f-severity", "Severity", SEVERITIES, "severity"),
      select("f-kind", "Kind", KINDS, "kind"),
      select("f-condition", "Condition", CONDITIONS, "condition"),
      select("f-status", "Status", ["open", "acknowledged"], "status"),
      memberForm),
    status,
    h("div", { class: "table-wrap" }, table));

  async function setMember(value) {
    filters.member = value;
    if (!value) { memberPatients = null; draw(); return; }
    try {
      const items = await apiAll(`/patients?member_id=${enc(value)}&limit=500`);
      memberPatients = new Set(items.map((p) => p.patient_id));
    } catch (e) { status.textContent = problemText(e); return; }
    draw();
  }

  function visible() {
    const rows = [];
    for (const a of alerts.values()) {
      if (a.status === "resolved") continue;
      if (filters.kind && a.kind !== filters.kind) continue;
      if (filters.severity && a.severity !== filters.severity) continue;
      if (filters.status && a.status !== filters.status) continue;
      if (filters.condition && (traj.get(a.patient_id) || {}).condition !== filters.condition) continue;
      if (memberPatients && !memberPatients.has(a.patient_id)) continue;
      rows.push(a);
    }
    rows.sort((x, y) => (SEV_RANK[x.severity] - SEV_RANK[y.severity]) || (Date.parse(x.opened_at) - Date.parse(y.opened_at)));
    return rows;
  }

  function drawCounts() {
    const c = { critical: 0, high: 0, medium: 0, low: 0 };
    for (const a of alerts.values()) if (a.status !== "resolved" && a.severity in c) c[a.severity]++;
    countsList.replaceChildren(...SEVERITIES.map((s) => h("li", { class: `count sev-${s}`, dataset: { severity: s, count: c[s] } }, `${label(s)}: ${c[s]}`)));
  }

  function draw() {
    if (!alive) return;
    const now = Date.now();
    const rows = visible();
    tbody.replaceChildren(...rows.map((a) => {
      const t = traj.get(a.patient_id) || {};
      const open = h("button", { type: "button", class: "linkbtn", onclick: () => ctx.navigate("alert", { id: a.id }) }, a.summary);
      const pat = h("button", { type: "button", class: "linkbtn", onclick: () => ctx.navigate("patient", { id: a.patient_id }) }, a.patient_id);
      return h("tr", { class: fresh.has(a.id) ? "new" : null, dataset: { alertId: a.id, severity: a.severity, status: a.status } },
        h("td", {}, sevBadge(a.severity)), h("td", {}, open), h("td", {}, pat), h("td", {}, label(a.kind)),
        h("td", { class: `status-${a.status}` }, label(a.status)),
        h("td", { title: when(a.opened_at) }, ago(a.opened_at, now)),
        h("td", {}, lastData(t) ? ago(lastData(t), now) : "—"),
        h("td", {}, label(t.condition)));
    }));
    drawCounts();
    status.textContent = rows.length ? `${rows.length} alert(s) shown.` : "No alerts match.";
    ctx.hooks.inbox = { rows: rows.length, ids: rows.map((a) => a.id) };
    root.dataset.rows = String(rows.length);
  }

  async function loadTrajectories() {
    const items = await apiAll("/trajectories?limit=500", { maxPages: 40 });
    traj.clear();
    for (const t of items) traj.set(t.patient_id, t);
  }

  async function loadAll() {
    try {
      const [open, acked] = await Promise.all([
        apiAll("/alerts?status=open&limit=500", { maxPages: 40 }),
        apiAll("/alerts?status=acknowledged&limit=500", { maxPages: 40 }),
        loadTrajectories(),
      ]);
      alerts.clear();
      for (const a of [...open, ...acked]) { alerts.set(a.id, a); if (a.severity === "critical") ctx.rememberCritical(a.id); }
      if (filters.member) await setMember(filters.member);
      draw();
      performance.mark("nw:inbox-rendered", { detail: { rows: alerts.size } });
    } catch (e) {
      if (alive) status.textContent = problemText(e);
    }
  }

  let trajTimer = null;
  const unsubscribe = ctx.subscribe((a) => {
    if (a === null) { loadAll(); return; }
    const isNew = !alerts.has(a.id);
    alerts.set(a.id, a);
    if (isNew && a.status !== "resolved") {
      fresh.add(a.id);
      ctx.announce(`New ${a.severity} alert for ${a.patient_id}: ${a.summary}`, false);
    }
    if (!traj.has(a.patient_id) && !trajTimer) {
      trajTimer = setTimeout(async () => { trajTimer = null; try { await loadTrajectories(); draw(); } catch { /* shown on next load */ } }, 300);
    }
    draw();
  });
  const tick = setInterval(draw, 30000);
  loadAll();
  return () => { alive = false; unsubscribe(); clearInterval(tick); if (trajTimer) clearTimeout(trajTimer); };
}
