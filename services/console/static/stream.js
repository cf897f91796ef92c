// Live alert changes. Preferred: a single-use stream ticket (POST /v1/alerts/stream-tickets) and an
// EventSource on /v1/alerts/stream?ticket=... (EventSource cannot send Authorization). Where the
// service has no ticket endpoint yet (404/405), the same stream is read with fetch() and the
// Authorization header. Either way a dropped stream reconnects with backoff; each (re)connection is
// reported as "connected" so views resynchronise what they may have missed; a 401 signs out (api.js).

import { api, ApiError, authHeader, signedIn } from "./api.js";

function parseSse(buffer, onEvent) {
  // Returns the unconsumed tail. Events are separated by a blank line.
  let idx;
  while ((idx = buffer.search(/\r?\n\r?\n/)) >= 0) {
    const raw = buffer.slice(0, idx);
    buffer = buffer.slice(buffer[idx] === "\r" ? idx + 4 : idx + 2);
    let event = "message";
    const data = [];
    for (const line of raw.split(/\r?\n/)) {
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") event = value;
      else if (field === "data") data.push(value);
    }
    if (data.length) onEvent(event, data.join("\n"));
  }
  return buffer;
}

export function startStream({ onAlert, onStatus }) {
  let stopped = false;
  let es = null;
  let abort = null;
  let delay = 500;
  let mode = "ticket";

  const deliver = (event, data) => {
    if (event !== "alert") return;
    try { onAlert(JSON.parse(data)); } catch (e) { console.warn("bad stream event", e.name); }
  };
  const retry = () => {
    if (stopped || !signedIn()) return;
    onStatus("reconnecting");
    setTimeout(connect, delay);
    delay = Math.min(delay * 2, 10000);
  };

  async function connect() {
    if (stopped || !signedIn()) return;
    if (mode === "ticket") {
      let ticket;
      try {
        ticket = await api("/alerts/stream-tickets", { method: "POST", body: {} });
      } catch (err) {
        if (err instanceof ApiError && (err.status === 404 || err.status === 405)) { mode = "fetch"; return connect(); }
        if (err instanceof ApiError && (err.status === 401 || err.status === 403)) { stopped = true; return; }
        return retry();
      }
      es = new EventSource(`/v1/alerts/stream?ticket=${encodeURIComponent(ticket.ticket)}`);
      es.addEventListener("open", () => { delay = 500; onStatus("connected"); });
      es.addEventListener("alert", (ev) => deliver("alert", ev.data));
      es.addEventListener("error", () => { if (es) es.close(); es = null; retry(); });
      return;
    }
    abort = new AbortController();
    try {
      const resp = await fetch("/v1/alerts/stream", {
        headers: { Authorization: authHeader(), Accept: "text/event-stream" },
        signal: abort.signal, cache: "no-store", credentials: "omit",
      });
      if (resp.status === 401) {
        // Let api.js sign out with its message (same path as every other 401).
        await api("/alerts/counts?group_by=severity").catch(() => {});
        stopped = true;
        return;
      }
      if (!resp.ok || !resp.body) return retry();
      delay = 500;
      onStatus("connected");
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer = parseSse(buffer + value, deliver);
      }
    } catch (err) {
      if (stopped) return;
    }
    // The stream ended (server closed it, e.g. a revoked key): reconnect; a 401 then signs out.
    retry();
  }

  connect();
  return () => {
    stopped = true;
    if (es) es.close();
    if (abort) abort.abort();
  };
}
