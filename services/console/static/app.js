// Console entry: sign-in, views (in-memory routing: no ids in the URL, the title or storage), live stream.

import { api, member, setUnauthorizedHandler, signedIn, signIn, signOutSession } from "./api.js";
import { startStream } from "./stream.js";
import { h } from "./util.js";
import * as inbox from "./inbox.js";
import * as alertView from "./alert.js";
import * as patient from "./patient.js";
import * as patients from "./patients.js";

const VIEWS = { inbox, alert: alertView, patient, patients };
const TITLES = { inbox: "Inbox", alert: "Alert", patient: "Patient", patients: "Patients" };
const $ = (id) => document.getElementById(id);

const hooks = (window.__nwConsole = { view: null, plot: null, inbox: null, signedIn: false, live: "off" });
const listeners = new Set();
const seenCritical = new Set();
let stopStream = null;
let current = null; // {name, params, cleanup}
const history = [];

function announce(text, assertive = false) {
  const node = $(assertive ? "announce-assertive" : "announce-polite");
  node.textContent = "";
  setTimeout(() => { node.textContent = text; }, 30);
}

function setLive(state) {
  hooks.live = state;
  const node = $("live-state");
  node.textContent = state === "connected" ? "● Live" : state === "reconnecting" ? "○ Reconnecting…" : "";
}

function showBanner(alert) {
  const b = $("banner");
  b.replaceChildren(
    h("span", {}, `${alert.change === "repaged" ? "Critical alert re-paged" : "New critical alert"}: ${alert.summary}`),
    h("button", { type: "button", class: "secondary", onclick: () => { hideBanner(); navigate("alert", { id: alert.id }); } }, "Open alert"),
    h("button", { type: "button", class: "secondary", onclick: hideBanner }, "Dismiss"),
  );
  b.hidden = false;
  announce(`${alert.change === "repaged" ? "Critical alert re-paged" : "New critical alert"}: ${alert.summary}`, true);
}
function hideBanner() { $("banner").hidden = true; $("banner").replaceChildren(); }

function onStreamAlert(alert) {
  const repaged = alert.change === "repaged";
  if (alert.severity === "critical" && alert.status !== "resolved" && (repaged || (alert.status === "open" && !seenCritical.has(alert.id)))) {
    seenCritical.add(alert.id);
    showBanner(alert);
  }
  for (const fn of listeners) {
    try { fn(alert); } catch (e) { console.warn("view update failed", e.name); }
  }
}

const ctx = {
  navigate: (...a) => navigate(...a),
  back: () => back(),
  announce,
  member,
  subscribe(fn) { listeners.add(fn); return () => listeners.delete(fn); },
  rememberCritical(id) { seenCritical.add(id); },
  hooks,
};

function render(name, params) {
  if (current && current.cleanup) current.cleanup();
  const container = $("view");
  container.replaceChildren();
  document.title = `NerveWatch console — ${TITLES[name]}`;
  for (const b of document.querySelectorAll(".navbtn")) {
    if (b.dataset.view === name) b.setAttribute("aria-current", "page"); else b.removeAttribute("aria-current");
  }
  hooks.view = name;
  const cleanup = VIEWS[name].render(container, params || {}, ctx);
  current = { name, params, cleanup };
  $("main").focus({ preventScroll: true });
  window.scrollTo(0, 0);
}

function navigate(name, params = {}) {
  if (current) history.push({ name: current.name, params: current.params });
  if (history.length > 50) history.shift();
  render(name, params);
}
function back() {
  const prev = history.pop();
  render(prev ? prev.name : "inbox", prev ? prev.params : {});
}

function signOut(message) {
  if (stopStream) stopStream();
  stopStream = null;
  if (current && current.cleanup) current.cleanup();
  current = null;
  history.length = 0;
  seenCritical.clear();
  listeners.clear();
  signOutSession();
  hooks.signedIn = false; hooks.view = null; hooks.plot = null; hooks.inbox = null;
  setLive("off");
  hideBanner();
  $("view").replaceChildren();
  $("view").hidden = true;
  for (const id of ["nav", "whoami", "signout", "live-state"]) $(id).hidden = true;
  $("signin").hidden = false;
  $("signin-form").reset();
  const err = $("signin-error");
  err.textContent = message || "";
  err.hidden = !message;
  document.title = "NerveWatch console";
  $("signin-key").focus();
}

async function onSignIn(ev) {
  ev.preventDefault();
  const key = $("signin-key").value.trim();
  const who = $("signin-member").value.trim();
  const err = $("signin-error");
  err.hidden = true;
  if (!key || !who) { err.textContent = "Enter both the care key and your member id."; err.hidden = false; return; }
  performance.mark("nw:signin");
  signIn(key, who);
  try {
    await api("/alerts/counts?group_by=severity&status=open");
  } catch (e) {
    signOutSession();
    err.textContent = e.status === 401 ? "That key is not valid." : e.status === 403 ? "That key lacks the care scope." : "Sign-in failed: the service did not answer.";
    err.hidden = false;
    return;
  }
  $("signin-form").reset(); // the key stays in memory only, not in the input
  $("signin").hidden = true;
  $("view").hidden = false;
  for (const id of ["nav", "whoami", "signout", "live-state"]) $(id).hidden = false;
  $("whoami").textContent = `Signed in as ${who}`;
  hooks.signedIn = true;
  stopStream = startStream({ onAlert: onStreamAlert, onStatus: (s) => {
    setLive(s);
    if (s === "connected") for (const fn of listeners) { try { fn(null); } catch { /* resync only */ } }
  } });
  render("inbox", {});
}

setUnauthorizedHandler((message) => { if (signedIn()) signOut(message); });
$("signin-form").addEventListener("submit", onSignIn);
$("signout").addEventListener("click", () => signOut("You have signed out."));
for (const b of document.querySelectorAll(".navbtn")) b.addEventListener("click", () => navigate(b.dataset.view, {}));
document.addEventListener("keydown", (ev) => {
  if (ev.key === "Escape" && !$("banner").hidden) hideBanner();
});
$("signin-key").focus();
