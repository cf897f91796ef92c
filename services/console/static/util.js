// DOM and formatting helpers. Text is always set as text nodes, never parsed as HTML: notes are patient free text.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export const SEVERITIES = ["critical", "high", "medium", "low"];
export const SEV_RANK = { critical: 0, high: 1, medium: 2, low: 3 };
export const KINDS = ["red_flag", "regression", "spreading_symptoms", "persistent_flare", "plateau",
  "activity_decline", "disengagement", "data_days_at_risk"];
export const CONDITIONS = ["carpal_tunnel", "cubital_tunnel", "radial_tunnel", "tarsal_tunnel", "peroneal_entrapment",
  "lumbar_radiculopathy", "cervical_radiculopathy", "peripheral_nerve_injury", "other_entrapment"];
export const STATES = ["insufficient_data", "improving", "plateau", "worsening", "flare", "recovered", "red_flag"];

export function label(s) { return s ? String(s).replaceAll("_", " ") : "—"; }

export function sevBadge(sev) { return h("span", { class: `sev sev-${sev}` }, sev); }

/** "3 h 5 min ago" style duration between an ISO time and now (ms clock injected for tests). */
export function ago(iso, now = Date.now()) {
  if (!iso) return "—";
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const hrs = Math.floor(m / 60);
  if (hrs < 48) return `${hrs} h ${m % 60} min`;
  return `${Math.floor(hrs / 24)} d`;
}

export function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

export function isoDate(d) { return d.toISOString().slice(0, 10); }

/** A datetime-local input value (local wall time) as RFC 3339 with this browser's offset. */
export function localInputToRfc3339(value) {
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return null;
  const off = -d.getTimezoneOffset();
  const sign = off >= 0 ? "+" : "-";
  const pad = (n) => String(Math.floor(Math.abs(n))).padStart(2, "0");
  const local = new Date(d.getTime() + off * 60000).toISOString().slice(0, 19);
  return `${local}${sign}${pad(off / 60)}:${pad(off % 60)}`;
}

export function toLocalInput(d) {
  const local = new Date(d.getTime() - d.getTimezoneOffset() * 60000);
  return local.toISOString().slice(0, 16);
}

export function problemText(err) {
  if (!err) return "Something went wrong.";
  if (err.problem && (err.problem.detail || err.problem.title)) {
    const extra = (err.problem.errors || []).map((e) => `${(e.loc || []).join(".")}: ${e.msg}`).join("; ");
    return `${err.problem.title || "Error"}: ${err.problem.detail || ""}${extra ? ` (${extra})` : ""}`;
  }
  return err.message || String(err);
}
