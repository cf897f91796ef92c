// Alert detail: summary, reasons, trajectory state, notifications, audit; acknowledge, resolve, snooze. Live.

import { api, enc } from "./api.js";
import { h, label, localInputToRfc3339, problemText, sevBadge, toLocalInput, when } from "./util.js";

export function render(root, params, ctx) {
  let alive = true;
  const id = params.id;
  const body = h("div", {}, h("p", { class: "muted", role: "status" }, "Loading…"));
  root.append(h("div", { class: "back" }, h("button", { type: "button", class: "secondary", onclick: () => ctx.back() }, "← Back")), body);

  async function load() {
    let alert, audit, snoozes;
    try {
      [alert, audit] = await Promise.all([api(`/alerts/${enc(id)}`), api(`/alerts/${enc(id)}/audit`)]);
      snoozes = await api(`/patients/${enc(alert.patient_id)}/snoozes`).then((p) => p.items || []).catch(() => []);
    } catch (e) {
      if (alive) body.replaceChildren(h("p", { class: "error", role: "alert" }, problemText(e)));
      return;
    }
    if (!alive) return;
    body.replaceChildren(...view(alert, audit.items || [], snoozes));
    root.dataset.status = alert.status;
    root.dataset.audit = (audit.items || []).map((x) => x.action).join(",");
  }

  function view(a, audit, snoozes) {
    const msg = h("p", { id: "action-msg", role: "status", class: "muted" });
    const act = async (path, payload, done) => {
      try {
        await api(path, { method: "POST", body: payload });
        msg.textContent = done;
        ctx.announce(done);
        await load();
        const m = document.getElementById("action-msg");
        if (m) m.textContent = done;
      } catch (e) { msg.textContent = problemText(e); msg.className = "error"; }
    };
    const ackNote = h("textarea", { id: "ack-note", maxlength: 2000 });
    const resNote = h("textarea", { id: "resolve-note", maxlength: 2000 });
    const snoozeKind = h("select", { id: "snooze-kind" },
      ["regression", "spreading_symptoms", "persistent_flare", "plateau", "activity_decline", "disengagement", "data_days_at_risk"]
        .map((k) => h("option", { value: k, selected: k === a.kind }, label(k))));
    const until = h("input", { id: "snooze-until", type: "datetime-local", value: toLocalInput(new Date(Date.now() + 7 * 86400000)) });
    const closed = a.status === "resolved";
    const forms = h("div", { class: "actions" },
      h("h2", {}, "Actions"), msg,
      h("form", { onsubmit: (ev) => { ev.preventDefault(); act(`/alerts/${enc(a.id)}/acknowledge`, { by: ctx.member(), ...(ackNote.value.trim() ? { note: ackNote.value.trim() } : {}) }, "Alert acknowledged."); } },
        h("label", { for: "ack-note" }, "Acknowledge note (optional)"), ackNote,
        h("button", { type: "submit", id: "ack-btn", disabled: a.status !== "open" }, "Acknowledge")),
      h("form", { onsubmit: (ev) => { ev.preventDefault(); act(`/alerts/${enc(a.id)}/resolve`, { by: ctx.member(), ...(resNote.value.trim() ? { note: resNote.value.trim() } : {}) }, "Alert resolved."); } },
        h("label", { for: "resolve-note" }, "Resolution note"), resNote,
        h("button", { type: "submit", id: "resolve-btn", disabled: closed }, "Resolve")),
      a.kind === "red_flag"
        ? h("p", { class: "muted" }, "Red flags are never snoozed.")
        : h("form", { onsubmit: (ev) => {
          ev.preventDefault();
          const u = localInputToRfc3339(until.value);
          if (!u) { msg.textContent = "Enter a valid date and time."; return; }
          act(`/patients/${enc(a.patient_id)}/snoozes`, { kind: snoozeKind.value, until: u, by: ctx.member() }, "Snooze set.");
        } },
        h("div", { class: "row" },
          h("div", {}, h("label", { for: "snooze-kind" }, "Snooze kind"), snoozeKind),
          h("div", {}, h("label", { for: "snooze-until" }, "Until"), until),
          h("button", { type: "submit", id: "snooze-btn" }, "Snooze this kind for the patient"))),
      h("h3", {}, "Active snoozes for this patient"),
      snoozes.length
        ? h("ul", { class: "plain", id: "snoozes" }, snoozes.map((z) => h("li", {},
          `${label(z.kind)} until ${when(z.until)} (by ${z.by}) `,
          h("button", { type: "button", class: "secondary", onclick: async () => {
            try {
              await api(`/patients/${enc(a.patient_id)}/snoozes/${enc(z.id)}`, { method: "DELETE", body: { by: ctx.member() } });
              ctx.announce("Snooze ended.");
              await load();
            } catch (e) { msg.textContent = problemText(e); msg.className = "error"; }
          } }, "End now"))))
        : h("p", { class: "muted" }, "None."));

    return [
      h("h1", {}, sevBadge(a.severity), " ", a.summary),
      h("div", { class: "grid2" },
        h("section", { class: "card", "aria-labelledby": "sum-h" },
          h("h2", { id: "sum-h" }, "Summary"),
          h("dl", { class: "kv" },
            h("dt", {}, "Patient"), h("dd", {}, h("button", { type: "button", class: "linkbtn", id: "open-patient", onclick: () => ctx.navigate("patient", { id: a.patient_id }) }, a.patient_id)),
            h("dt", {}, "Kind"), h("dd", {}, label(a.kind)),
            h("dt", {}, "Status"), h("dd", { id: "alert-status", class: `status-${a.status}` }, label(a.status)),
            h("dt", {}, "Trajectory"), h("dd", {}, label(a.trajectory_state)),
            h("dt", {}, "Observed"), h("dd", {}, when(a.event_time)),
            h("dt", {}, "Opened"), h("dd", {}, when(a.opened_at)),
            a.retrospective ? [h("dt", {}, "Retrospective"), h("dd", {}, "yes (backfilled, did not page)")] : null,
            a.acknowledged_by ? [h("dt", {}, "Acknowledged"), h("dd", {}, `${a.acknowledged_by}, ${when(a.acknowledged_at)}`)] : null,
            a.resolved_at ? [h("dt", {}, "Resolved"), h("dd", {}, `${label(a.resolution)}, ${when(a.resolved_at)}`)] : null),
          h("h3", {}, "Reasons"),
          h("ul", { class: "plain", id: "reasons" }, (a.reasons || []).map((r) => h("li", {}, h("strong", {}, label(r.code)), ": ", r.detail)))),
        h("section", { class: "card", "aria-labelledby": "act-h" }, h("span", { id: "act-h", class: "sr-only" }, "Actions"), forms)),
      h("section", { class: "card", "aria-labelledby": "notif-h" },
        h("h2", { id: "notif-h" }, "Notifications"),
        (a.notifications || []).length
          ? h("div", { class: "table-wrap" }, h("table", { id: "notifications" },
            h("thead", {}, h("tr", {}, ["Member", "Channel", "Delivery", "Attempts"].map((t) => h("th", { scope: "col" }, t)))),
            h("tbody", {}, a.notifications.map((n) => h("tr", {}, h("td", {}, n.member_id), h("td", {}, n.channel), h("td", {}, label(n.status)), h("td", {}, n.attempts))))))
          : h("p", { class: "muted" }, "No notifications were sent.")),
      h("section", { class: "card", "aria-labelledby": "audit-h" },
        h("h2", { id: "audit-h" }, "Audit trail"),
        h("div", { class: "table-wrap" }, h("table", { id: "audit" },
          h("thead", {}, h("tr", {}, ["When", "Who", "Action", "Detail"].map((t) => h("th", { scope: "col" }, t)))),
          h("tbody", {}, audit.map((x) => h("tr", { dataset: { action: x.action } },
            h("td", {}, when(x.at)), h("td", {}, x.actor), h("td", {}, label(x.action)),
            h("td", {}, Object.entries(x.detail || {}).map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join("; ")))))))),
    ];
  }

  const unsubscribe = ctx.subscribe((a) => { if (a === null || a.id === id) load(); });
  load();
  return () => { alive = false; unsubscribe(); };
}
