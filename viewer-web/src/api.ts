// The archive's HTTP API, as the viewer uses it. The browser session is the `pacs_session`
// cookie (HttpOnly, SameSite=Strict) set by POST /api/login; requests that change state
// carry the session's CSRF token in X-CSRF-Token. GETs need no token.

import type { DicomJson } from './dicom';

/** A request that failed, with a sentence a person can act on. */
export class ApiError extends Error {
  constructor(
    /** The HTTP status, or 0 when the server could not be reached. */
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export interface Me {
  username: string;
  role: string;
  clinic: string | null;
  csrf_token?: string;
}

let csrfToken: string | undefined;

/** The reason the server gave in its JSON error body (`{"error": "…"}`), if any. */
async function reason(res: Response): Promise<string | undefined> {
  try {
    const body: unknown = await res.json();
    if (body && typeof body === 'object' && 'error' in body) {
      const e = (body as { error: unknown }).error;
      if (typeof e === 'string' && e.length > 0) return e;
    }
  } catch {
    // Not JSON: say what the status means instead.
  }
  return undefined;
}

function describe(status: number, what: string, why: string | undefined): string {
  const because = why ? `: ${why}` : '';
  switch (status) {
    case 401:
      return `You are not logged in, or your session has ended${because}.`;
    case 403:
      return `You are not allowed to see ${what}${because}.`;
    case 404:
      return `${capitalise(what)} was not found, or you may not see it${because}.`;
    case 406:
      return `The server cannot send ${what} in a form this viewer reads${because}.`;
    case 429:
      return `Too many attempts: wait a little and try again${because}.`;
    default:
      if (status >= 500) return `The archive server failed while loading ${what} (HTTP ${status})${because}.`;
      return `Loading ${what} failed (HTTP ${status})${because}.`;
  }
}

function capitalise(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

async function send(path: string, init: RequestInit, what: string): Promise<Response> {
  let res: Response;
  try {
    res = await fetch(path, { credentials: 'same-origin', ...init });
  } catch {
    throw new ApiError(0, `The archive server cannot be reached while loading ${what}. Check the network and try again.`);
  }
  if (!res.ok) {
    throw new ApiError(res.status, describe(res.status, what, await reason(res)));
  }
  return res;
}

/** The headers of a request that changes state: JSON, and the session's CSRF token. */
function writeHeaders(withBody: boolean): Record<string, string> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (withBody) headers['Content-Type'] = 'application/json';
  if (csrfToken) headers['X-CSRF-Token'] = csrfToken;
  return headers;
}

/**
 * POST/PUT with an optional JSON body and the CSRF token; the JSON answer, or undefined
 * for 204. `what` names the action for error messages ("saving the draft").
 */
export async function sendJson<T>(method: 'POST' | 'PUT' | 'DELETE', path: string, body: unknown, what: string): Promise<T | undefined> {
  const init: RequestInit = { method, headers: writeHeaders(body !== undefined) };
  if (body !== undefined) init.body = JSON.stringify(body);
  let res: Response;
  try {
    res = await fetch(path, { credentials: 'same-origin', ...init });
  } catch {
    throw new ApiError(0, `The archive server cannot be reached while ${what}. Check the network and try again.`);
  }
  if (!res.ok) {
    const why = await reason(res);
    throw new ApiError(res.status, describeWrite(res.status, what, why));
  }
  if (res.status === 204) return undefined;
  return (await res.json()) as T;
}

function describeWrite(status: number, what: string, why: string | undefined): string {
  const because = why ? `: ${why}` : '';
  switch (status) {
    case 401:
      return `You are not logged in, or your session has ended${because}.`;
    case 403:
      return `You are not allowed to do this (${what})${because}.`;
    case 404:
      return `${capitalise(what)} failed: not found, or not yours${because}.`;
    case 409:
      return `${capitalise(what)} failed${because}.`;
    case 400:
      return `${capitalise(what)} was refused${because}.`;
    default:
      if (status >= 500) return `The archive server failed while ${what} (HTTP ${status})${because}.`;
      return `${capitalise(what)} failed (HTTP ${status})${because}.`;
  }
}

/** GET a JSON answer. */
export async function getJson<T>(path: string, what: string, accept = 'application/json'): Promise<T> {
  const res = await send(path, { headers: { Accept: accept } }, what);
  return (await res.json()) as T;
}

/** GET a DICOM JSON answer (QIDO-RS, WADO-RS metadata). */
export function getDicomJson(path: string, what: string): Promise<DicomJson[]> {
  return getJson<DicomJson[]>(path, what, 'application/dicom+json');
}

/** Who is logged in, or null when nobody is (401). */
export async function me(): Promise<Me | null> {
  try {
    const m = await getJson<Me>('/api/me', 'your session');
    csrfToken = m.csrf_token;
    return m;
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return null;
    throw e;
  }
}

/** POST /api/login: starts a session (the cookie) and keeps its CSRF token. */
export async function login(username: string, password: string): Promise<Me> {
  let res: Response;
  try {
    res = await fetch('/api/login', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify({ username, password }),
    });
  } catch {
    throw new ApiError(0, 'The archive server cannot be reached. Check the network and try again.');
  }
  if (!res.ok) {
    const why = await reason(res);
    if (res.status === 401) throw new ApiError(401, 'Wrong username or password.');
    if (res.status === 403) throw new ApiError(403, `This account cannot log in${why ? `: ${why}` : ''}.`);
    throw new ApiError(res.status, describe(res.status, 'the login', why));
  }
  const m = (await res.json()) as Me;
  csrfToken = m.csrf_token;
  return m;
}

/** POST /api/logout (with the CSRF token the session needs). */
export async function logout(): Promise<void> {
  const headers = writeHeaders(false);
  try {
    await send('/api/logout', { method: 'POST', headers }, 'the logout');
  } finally {
    csrfToken = undefined;
  }
}
