// Patient view: one time axis (stacked, synchronised uPlot charts) with symptom index, items, grip,
// function, steps, baseline, MCID band, physio sessions, flares and alert markers; zoom; check-ins
// with notes; current state with reasons; billing figures and a form to log management time.

import { api, apiAll, enc } from "./api.js";
import { h, isoDate, label, localInputToRfc3339, problemText, sevBadge, toLocalInput, when } from "./util.js";

const DAY = 86400;
// A scale without data keeps a range (uPlot hides the axis of an empty scale, which would shift the plot area).
const keepRange = (_u, min, max) => (min == null || max == null ? [0, 1] : window.uPlot.rangeNum(min, max, 0.1, true));
const BLANK_RIGHT = { side: 1, size: 60, label: "", grid: { show: false }, ticks: { show: false }, values: (_u, splits) => splits.map(() => "") };
const ZOOMS = [["2w", "2 weeks", 14], ["3m", "3 months", 91], ["all", "All", null]];
const SEV_COLOURS = { critical: "#a3001b", high: "#8a3b00", medium: "#5b4a00", low: "#36505e" };
const ACTIVITIES = ["data_review", "program_change", "patient_call", "patient_video", "message", "other"];
// Default scoring profile (services/scoring/profile.py): index MCID = 30 % of baseline, clamped to 12..20.
const indexMcid = (baseline) => Math.min(20, Math.max(12, 0.3 * baseline));
let zoomChoice = "3m";

function localDate(iso, tz) {
  try {
    return new Intl.DateTimeFormat("en-CA", { timeZone: tz || "UTC", year: "numeric", month: "2-digit", day: "2-digit" }).format(new Date(iso));
  } catch { return iso.slice(0, 10); }
}
const dayX = (date) => Date.parse(`${date}T00:00:00Z`) / 1000;

export function render(root, params, ctx) {
  let alive = true;
  const pid = params.id;
  const charts = [];
  const body = h("div", {}, h("p", { class: "muted", role: "status" }, "Loading…"));
  root.append(h("div", { class: "back" }, h("button", { type: "button", class: "secondary", onclick: () => ctx.back() }, "← Back")), body);
  const t0 = performance.now();

  async function load() {
    const today = new Date();
    try {
      const rec = await api(`/patients/${enc(pid)}`);
      const start = [rec.onset_date, rec.enrolled_at && rec.enrolled_at.slice(0, 10), isoDate(new Date(Date.now() - 730 * 86400000))]
        .filter(Boolean).sort()[0];
      const month = isoDate(today).slice(0, 7);
      const [traj, checkins, alerts, billing, entries] = await Promise.all([
        api(`/patients/${enc(pid)}/trajectory?since=${start}`), // up to the patient's local today
        apiAll(`/patients/${enc(pid)}/checkins?limit=500`, { maxPages: 10 }),
        apiAll(`/alerts?patient_id=${enc(pid)}&limit=500`, { maxPages: 4 }),
        api(`/patients/${enc(pid)}/billing`).catch((e) => ({ error: e })),
        api(`/patients/${enc(pid)}/time-entries?month=${month}`).catch((e) => ({ error: e })),
      ]);
      if (!alive) return;
      draw(rec, traj, checkins, alerts, billing, entries);
      performance.mark("nw:patient-rendered", { detail: { days: (traj.days || []).length } });
      ctx.hooks.patientRenderMs = performance.now() - t0;
    } catch (e) {
      if (alive) body.replaceChildren(h("p", { class: "error", role: "alert" }, problemText(e)));
    }
  }

  function plotModel(rec, traj, checkins, alerts) {
    const tz = rec.timezone;
    // Days the trajectory does not cover (older than the range scoring answered) are drawn from
    // the stored check-ins: the daily mean of each item, no symptom index, no steps.
    const byDate = new Map((traj.days || []).map((d) => [d.date, d]));
    const extra = new Map();
    for (const c of checkins) {
      const date = localDate(c.recorded_at, tz);
      if (byDate.has(date)) continue;
      const e = extra.get(date) || { date, n: 0, sums: {}, counts: {}, pt_session: false, checkins: 0, source: "checkins" };
      e.checkins += 1;
      if (c.pt_session) e.pt_session = true;
      const vals = { pain: c.pain && c.pain.current, tingling: c.tingling, numbness: c.numbness, weakness: c.weakness, grip_strength_kg: c.grip_strength_kg };
      for (const [k, v] of Object.entries(vals)) if (v !== undefined && v !== null) { e.sums[k] = (e.sums[k] || 0) + v; e.counts[k] = (e.counts[k] || 0) + 1; }
      extra.set(date, e);
    }
    for (const e of extra.values()) {
      const d = { date: e.date, pt_session: e.pt_session, checkins: e.checkins, source: "checkins" };
      for (const k of Object.keys(e.sums)) d[k] = Math.round((e.sums[k] / e.counts[k]) * 10) / 10;
      byDate.set(e.date, d);
    }
    const days = [...byDate.values()].sort((a, b) => a.date.localeCompare(b.date));
    const fnByDay = new Map();
    for (const c of [...checkins].reverse()) if (c.function) fnByDay.set(localDate(c.recorded_at, tz), c.function.score);
    const x = days.map((d) => dayX(d.date));
    const col = (k) => days.map((d) => (d[k] === undefined ? null : d[k]));
    const baseline = traj.baseline_symptom_index;
    const markers = [];
    for (const d of days) if (d.pt_session) markers.push({ type: "pt_session", date: d.date, x: dayX(d.date) });
    for (const a of alerts) {
      const date = localDate(a.event_time, tz);
      markers.push({ type: a.kind === "persistent_flare" ? "flare" : "alert", id: a.id, kind: a.kind, severity: a.severity, status: a.status, date, x: dayX(date) });
    }
    return {
      x, days,
      series: {
        symptom_index: col("symptom_index"), pain: col("pain"), tingling: col("tingling"), numbness: col("numbness"),
        weakness: col("weakness"), grip_strength_kg: col("grip_strength_kg"), steps: col("steps"),
        function: days.map((d) => (fnByDay.has(d.date) ? fnByDay.get(d.date) : null)),
      },
      baseline: baseline ?? null,
      mcid: baseline != null ? indexMcid(baseline) : null,
      markers,
      function_instrument: (checkins.find((c) => c.function) || {}).function?.instrument || null,
    };
  }

  function markerHook(model) {
    return (u) => {
      const { ctx: c } = u;
      const top = u.bbox.top, height = u.bbox.height;
      c.save();
      for (const m of model.markers) {
        const px = u.valToPos(m.x + DAY / 2, "x", true);
        if (px < u.bbox.left || px > u.bbox.left + u.bbox.width) continue;
        c.beginPath();
        if (m.type === "pt_session") { c.strokeStyle = "#1d6b35"; c.setLineDash([3, 3]); c.lineWidth = 1; }
        else if (m.type === "flare") { c.strokeStyle = "#b35900"; c.setLineDash([]); c.lineWidth = 2; }
        else { c.strokeStyle = SEV_COLOURS[m.severity] || "#a3001b"; c.setLineDash([]); c.lineWidth = 2; }
        c.moveTo(px, top); c.lineTo(px, top + height); c.stroke();
      }
      c.restore();
    };
  }

  function bandHook(model) {
    return (u) => {
      if (model.baseline == null) return;
      const y1 = u.valToPos(model.baseline + model.mcid, "y", true);
      const y2 = u.valToPos(Math.max(0, model.baseline - model.mcid), "y", true);
      u.ctx.save();
      u.ctx.fillStyle = "rgba(10, 79, 163, 0.10)";
      u.ctx.fillRect(u.bbox.left, y1, u.bbox.width, y2 - y1);
      u.ctx.restore();
    };
  }

  function makeChart(el, model, title, series, data, opts = {}) {
    const width = Math.max(320, el.clientWidth || 800);
    const sync = window.uPlot.sync("nw-patient");
    const u = new window.uPlot({
      title, width, height: opts.height || 180,
      cursor: { sync: { key: sync.key } },
      scales: { x: { time: true }, y: { range: keepRange }, ...(opts.scales || {}) },
      // Same axis widths on every chart, so that their plot areas (and so the time axis) line up.
      axes: opts.axes || [{}, { label: opts.yLabel || "", size: 60 }, BLANK_RIGHT],
      series: [{}, ...series],
      hooks: { drawClear: opts.band ? [bandHook(model)] : [], draw: [markerHook(model)] },
      legend: { live: true },
    }, [model.x, ...data], el);
    charts.push(u);
    return u;
  }

  function applyZoom(model, choice) {
    zoomChoice = choice;
    if (!model.x.length) return;
    const last = Math.max(model.x[model.x.length - 1], ...model.markers.map((m) => m.x));
    const max = last + DAY;
    const span = ZOOMS.find((z) => z[0] === choice)[2];
    const first = Math.min(model.x[0], ...model.markers.map((m) => m.x));
    const min = span ? max - span * DAY : first;
    for (const u of charts) u.setScale("x", { min, max });
    ctx.hooks.plot.zoom = { choice, min, max };
    for (const b of document.querySelectorAll(".zoom button")) b.setAttribute("aria-pressed", String(b.dataset.zoom === choice));
  }

  function draw(rec, traj, checkins, alerts, billing, entries) {
    for (const u of charts) u.destroy();
    charts.length = 0;
    const model = plotModel(rec, traj, checkins, alerts);
    ctx.hooks.plot = model;
    const chartBox = h("div", { id: "patient-charts", dataset: { points: String(model.x.length), markers: String(model.markers.length) } });
    const zoom = h("div", { class: "zoom", role: "group", "aria-label": "Time range" },
      ZOOMS.map(([k, text]) => h("button", { type: "button", class: "secondary", dataset: { zoom: k }, "aria-pressed": String(k === zoomChoice), onclick: () => applyZoom(model, k) }, text)));
    const open = alerts.filter((a) => a.status !== "resolved");
    body.replaceChildren(
      h("h1", {}, `Patient ${rec.patient_id}`),
      h("section", { class: "card", "aria-labelledby": "chart-h" },
        h("div", { class: "row" }, h("h2", { id: "chart-h" }, "Course"), zoom),
        h("p", { class: "legend-note" }, "Shaded band: baseline symptom index ± its minimal clinically important difference. ",
          "Days before the scored range show the check-ins' daily means (no index, no steps). ",
          "Vertical lines: green dashed = physiotherapy session, orange = flare alert, red/brown = other alerts (colour by severity)."),
        chartBox),
      h("div", { class: "grid2" },
        h("section", { class: "card", "aria-labelledby": "state-h" },
          h("h2", { id: "state-h" }, "Current state"),
          h("dl", { class: "kv" },
            h("dt", {}, "State"), h("dd", { id: "patient-state" }, label(traj.state)),
            h("dt", {}, "Symptom index"), h("dd", {}, traj.symptom_index ?? "—", traj.baseline_symptom_index != null ? ` (baseline ${traj.baseline_symptom_index})` : ""),
            h("dt", {}, "Change from baseline"), h("dd", {}, traj.change_from_baseline_pct != null ? `${traj.change_from_baseline_pct} %` : "—"),
            h("dt", {}, "Slope"), h("dd", {}, traj.slope_per_week != null ? `${traj.slope_per_week} / week` : "—"),
            h("dt", {}, "As of"), h("dd", {}, when(traj.as_of)),
            h("dt", {}, "Condition"), h("dd", {}, `${label(rec.condition)}, ${label(rec.side)}, ${label(rec.treatment)}`),
            h("dt", {}, "Open alerts"), h("dd", {}, open.length ? open.map((a) => h("span", {}, sevBadge(a.severity), " ", h("button", { type: "button", class: "linkbtn", onclick: () => ctx.navigate("alert", { id: a.id }) }, a.summary), " ")) : "none")),
          h("h3", {}, "Reasons"),
          h("ul", { class: "plain", id: "state-reasons" }, (traj.reasons || []).map((r) => h("li", {}, h("strong", {}, label(r.code)), ": ", r.detail)))),
        billingSection(billing, entries)),
      checkinSection(checkins));
    if (!model.x.length) { chartBox.append(h("p", { class: "muted" }, "No data yet.")); return; }
    const mk = () => h("div", { class: "chart" });
    const [c1, c2, c3, c4] = [mk(), mk(), mk(), mk()];
    chartBox.append(c1, c2, c3, c4);
    const labels = ["Symptom index over time with baseline and MCID band", "Pain, tingling, numbness and weakness over time", "Grip strength and function score over time", "Daily steps over time"];
    [c1, c2, c3, c4].forEach((c, i) => { c.setAttribute("role", "img"); c.setAttribute("aria-label", `${labels[i]}; the check-in table below lists the values`); });
    const s = model.series;
    const baseLine = model.x.map(() => model.baseline);
    makeChart(c1, model, "Symptom index (0-100, higher worse)", [
      { label: "Symptom index", stroke: "#0a4fa3", width: 2, spanGaps: true },
      { label: "Baseline", stroke: "#4a5360", dash: [6, 4], width: 1, points: { show: false } },
    ], [s.symptom_index, baseLine], { band: true, scales: { y: { range: [0, 100] } }, yLabel: "index" });
    makeChart(c2, model, "Symptom items (0-10)", [
      { label: "Pain", stroke: "#a3001b", width: 2, spanGaps: true },
      { label: "Tingling", stroke: "#6b2fa3", width: 2, spanGaps: true },
      { label: "Numbness", stroke: "#0a6b73", width: 2, spanGaps: true },
      { label: "Weakness", stroke: "#8a3b00", width: 2, spanGaps: true },
    ], [s.pain, s.tingling, s.numbness, s.weakness], { scales: { y: { range: [0, 10] } }, yLabel: "0-10" });
    makeChart(c3, model, "Grip strength (kg) and function score", [
      { label: "Grip (kg)", stroke: "#1d6b35", width: 2, spanGaps: true },
      { label: `Function${model.function_instrument ? ` (${model.function_instrument})` : ""}`, stroke: "#5b4a00", width: 2, spanGaps: true, scale: "fn", points: { show: true } },
    ], [s.grip_strength_kg, s.function], { scales: { fn: { range: keepRange } }, axes: [{}, { label: "kg", size: 60 }, { scale: "fn", side: 1, size: 60, label: "function", grid: { show: false } }] });
    makeChart(c4, model, "Daily steps", [
      { label: "Steps", stroke: "#36505e", width: 2, spanGaps: true, fill: "rgba(54,80,94,0.12)" },
    ], [s.steps], { yLabel: "steps", height: 150 });
    applyZoom(model, zoomChoice);
  }

  function checkinSection(checkins) {
    const SHOW = 20;
    const row = (c) => h("tr", {},
      h("td", {}, when(c.recorded_at)), h("td", {}, c.pain ? c.pain.current : "—"), h("td", {}, c.tingling ?? "—"),
      h("td", {}, c.numbness ?? "—"), h("td", {}, c.weakness ?? "—"), h("td", {}, c.grip_strength_kg ?? "—"),
      h("td", {}, c.function ? `${c.function.score} (${c.function.instrument})` : "—"),
      h("td", {}, c.pt_session ? label(c.pt_session.intensity || "yes") : "—"),
      h("td", { class: (c.red_flags || []).length ? "error" : null }, (c.red_flags || []).map(label).join(", ") || "—"),
      h("td", { class: "notes" }, c.notes || ""));
    const tbody = h("tbody", {}, checkins.slice(0, SHOW).map(row));
    const more = checkins.length > SHOW
      ? h("button", { type: "button", class: "secondary", onclick: (ev) => { tbody.replaceChildren(...checkins.map(row)); ev.target.remove(); } }, `Show all ${checkins.length} check-ins`)
      : null;
    return h("section", { class: "card", "aria-labelledby": "ci-h" },
      h("h2", { id: "ci-h" }, `Check-ins (${checkins.length}, newest first)`),
      h("div", { class: "table-wrap" }, h("table", { id: "checkins" },
        h("thead", {}, h("tr", {}, ["Recorded", "Pain", "Tingling", "Numbness", "Weakness", "Grip", "Function", "Physio", "Red flags", "Notes"].map((t) => h("th", { scope: "col" }, t)))),
        tbody)), more);
  }

  function billingSection(billing, entries) {
    const sec = h("section", { class: "card", "aria-labelledby": "bill-h", id: "billing" }, h("h2", { id: "bill-h" }, "RTM billing"));
    if (billing.error) { sec.append(h("p", { class: "muted" }, `Billing figures unavailable: ${problemText(billing.error)}`)); return sec; }
    const period = (billing.periods || []).find((p) => !p.closed) || (billing.periods || []).slice(-1)[0];
    const month = (billing.months || []).slice(-1)[0];
    sec.append(h("dl", { class: "kv" },
      h("dt", {}, "Period"), h("dd", {}, period ? `${period.start} – ${period.end}${period.closed ? " (closed)" : ""}` : "no data yet"),
      h("dt", {}, "Data days"), h("dd", { id: "data-days" }, period ? `${period.data_days}${period.data_days_possible != null ? ` (can still reach ${period.data_days_possible})` : ""}; code ${period.supply_code || "none"}` : "0"),
      h("dt", {}, "This month"), h("dd", { id: "month-minutes" }, month ? `${month.minutes} min${month.interactive ? ", interactive contact" : ", no interactive contact yet"}; codes ${(month.management_codes || []).join(", ") || "none"}` : "0 min"),
      h("dt", {}, "Set-up (98975)"), h("dd", {}, billing.setup_code_eligible ? "eligible" : "not yet")));
    const msg = h("p", { role: "status", class: "muted" });
    const started = h("input", { id: "te-start", type: "datetime-local", value: toLocalInput(new Date(Date.now() - 15 * 60000)), required: true });
    const minutes = h("input", { id: "te-minutes", type: "number", min: 1, max: 240, value: 10, required: true });
    const activity = h("select", { id: "te-activity" }, ACTIVITIES.map((a) => h("option", { value: a }, label(a))));
    const interactive = h("input", { id: "te-interactive", type: "checkbox" });
    const note = h("input", { id: "te-note", type: "text", maxlength: 500 });
    const form = h("form", { onsubmit: async (ev) => {
      ev.preventDefault();
      const at = localInputToRfc3339(started.value);
      if (!at) { msg.textContent = "Enter a valid start time."; return; }
      try {
        await api(`/patients/${enc(pid)}/time-entries`, { method: "POST", body: {
          member_id: ctx.member(), started_at: at, minutes: Number(minutes.value), activity: activity.value,
          interactive: interactive.checked, ...(note.value.trim() ? { note: note.value.trim() } : {}) } });
        ctx.announce("Time logged.");
        await load();
      } catch (e) { msg.textContent = problemText(e); msg.className = "error"; }
    } },
    h("h3", {}, "Log management time"),
    h("div", { class: "row" },
      h("div", {}, h("label", { for: "te-start" }, "Started"), started),
      h("div", {}, h("label", { for: "te-minutes" }, "Minutes"), minutes),
      h("div", {}, h("label", { for: "te-activity" }, "Activity"), activity)),
    h("div", { class: "row" },
      h("div", {}, h("label", { for: "te-interactive" }, interactive, " Real-time call or video with the patient")),
      h("div", {}, h("label", { for: "te-note" }, "Note (optional)"), note)),
    h("button", { type: "submit", id: "te-submit" }, "Log time"), msg);
    sec.append(form);
    const items = entries && !entries.error ? entries.items || [] : [];
    if (items.length) {
      sec.append(h("h3", {}, "This month's entries"), h("ul", { class: "plain", id: "time-entries" },
        items.map((e) => h("li", {}, `${when(e.started_at)}: ${e.minutes} min, ${label(e.activity)}${e.interactive ? " (interactive)" : ""} by ${e.member_id}`))));
    }
    return sec;
  }

  const onResize = () => { for (const u of charts) { const w = u.root.parentElement?.clientWidth; if (w) u.setSize({ width: Math.max(320, w), height: u.height }); } };
  window.addEventListener("resize", onResize);
  const unsubscribe = ctx.subscribe((a) => { if (a && a.patient_id === pid) load(); });
  load();
  return () => { alive = false; unsubscribe(); window.removeEventListener("resize", onResize); for (const u of charts) u.destroy(); };
}
