// The one place that talks to the API. Credentials live in this module's memory only (see docs/console.md).

const session = { key: null, member: null };
let onUnauthorized = () => {};

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem && problem.title ? `${status} ${problem.title}` : `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

export function signIn(key, member) { session.key = key; session.member = member; }
export function signOutSession() { session.key = null; session.member = null; }
export function signedIn() { return session.key !== null; }
export function member() { return session.member; }
export function authHeader() { return session.key ? `Bearer ${session.key}` : ""; }
export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

/** fetch `/v1${path}` with the session's key; JSON in and out; ApiError on a non-2xx answer.
 * A 401 (key revoked or unknown) also signs the console out. */
export async function api(path, { method = "GET", body, signal, accept } = {}) {
  if (!session.key) throw new ApiError(401, { title: "Not signed in" });
  const headers = { Authorization: authHeader(), Accept: accept || "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(`/v1${path}`, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    signal, cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer",
  });
  if (resp.status === 204) return null;
  const text = await resp.text();
  let payload = null;
  try { payload = text ? JSON.parse(text) : null; } catch { payload = null; }
  if (!resp.ok) {
    if (resp.status === 401) onUnauthorized("Your key is no longer valid (revoked or unknown). You have been signed out.");
    throw new ApiError(resp.status, payload);
  }
  return payload;
}

/** Every page of a cursor-paged list (`items`, `next_cursor`), up to `maxPages`. */
export async function apiAll(path, { maxPages = 20, signal } = {}) {
  const items = [];
  let cursor = null;
  for (let i = 0; i < maxPages; i++) {
    const sep = path.includes("?") ? "&" : "?";
    const page = await api(cursor ? `${path}${sep}cursor=${encodeURIComponent(cursor)}` : path, { signal });
    items.push(...(page.items || []));
    cursor = page.next_cursor;
    if (!cursor) break;
  }
  return items;
}

export const enc = encodeURIComponent;
