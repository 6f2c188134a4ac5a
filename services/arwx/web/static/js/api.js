// The JSON API as the dashboard uses it: the session cookie (HttpOnly, set by /v1/auth/login)
// authenticates every call; state-changing calls carry the CSRF token the sign-in answer gave.

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

const state = { csrf: null, me: null, onSignedOut: () => {} };

export function session() {
  return state.me;
}

export function onSignedOut(fn) {
  state.onSignedOut = fn;
}

function adopt(body) {
  state.me = body;
  state.csrf = body ? body.csrf : null;
  return body;
}

/** fetch a /v1 path: JSON in and out (or text with {text: true}); ApiError for any non-2xx. */
export async function api(path, { method = "GET", body, text = false, signal } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && method !== "HEAD" && state.csrf) headers["X-CSRF-Token"] = state.csrf;
  const r = await fetch(path, {
    method, headers, signal, credentials: "same-origin", cache: "no-store",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!r.ok) {
    let msg = r.statusText;
    try {
      const b = await r.json();
      msg = b.error || b.message || msg;
    } catch (_) { /* not JSON */ }
    if (r.status === 401 && !path.startsWith("/v1/auth/")) {
      adopt(null);
      state.onSignedOut();
    }
    throw new ApiError(r.status, msg || `HTTP ${r.status}`);
  }
  if (r.status === 204) return null;
  return text ? r.text() : r.json();
}

/** Who is signed in (null when nobody). */
export async function loadSession() {
  try {
    return adopt(await api("/v1/auth/me"));
  } catch (e) {
    if (e.status === 401 || e.status === 404) return adopt(null);
    throw e;
  }
}

export async function signIn(email, password) {
  return adopt(await api("/v1/auth/login", { method: "POST", body: { email, password } }));
}

/** Redeem a one-time set-password token (the first start's link, or an invited account's). */
export async function setupPassword(token, email, password) {
  return adopt(await api("/v1/auth/setup", { method: "POST", body: email ? { token, email, password } : { token, password } }));
}

export async function signOut() {
  try {
    await api("/v1/auth/logout", { method: "POST", body: {} });
  } finally {
    adopt(null);
  }
}

export async function switchOrg(org) {
  const body = await api("/v1/auth/org", { method: "POST", body: { org } });
  return adopt(body && body.user ? body : await api("/v1/auth/me"));
}

/** "?a=1&b=2" from an object, leaving out null/undefined/"" values. */
export function qs(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") u.set(k, String(v));
  const s = u.toString();
  return s ? "?" + s : "";
}

export const enc = encodeURIComponent;
