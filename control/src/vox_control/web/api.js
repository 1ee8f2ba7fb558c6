// The page's only way to the server: fetch and WebSocket calls carrying the token, and the
// API's own error messages turned into exceptions.

const TOKEN_KEY = "vox.token";

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

// The server answers OpenAI's envelope {"error": {"message", ...}}; anything else is shown as is.
function messageOf(body, fallback) {
  const error = body && body.error;
  if (error && typeof error === "object" && error.message) return error.message;
  if (typeof error === "string") return error;
  if (body && typeof body.message === "string") return body.message;
  return fallback;
}

export async function errorFrom(response) {
  const text = await response.text();
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: the text itself is the message
  }
  const message = messageOf(body, text.trim() || response.statusText);
  return new ApiError(`${message} (HTTP ${response.status})`, response.status);
}

// fetch with the token; a non-2xx answer throws its message. `json` sends a JSON body.
export async function request(path, { method = "GET", json, body, headers = {} } = {}) {
  const all = { ...headers };
  const token = getToken();
  if (token) all.Authorization = `Bearer ${token}`;
  if (json !== undefined) {
    all["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(path, { method, headers: all, body });
  } catch (exc) {
    throw new ApiError(`the server cannot be reached: ${exc.message}`, 0);
  }
  if (!response.ok) throw await errorFrom(response);
  return response;
}

export async function getJSON(path, options) {
  return (await request(path, options)).json();
}

// An NDJSON body, one parsed object per line as it arrives (the pull's progress).
export async function* ndjson(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffered += value;
    const lines = buffered.split("\n");
    buffered = lines.pop();
    for (const line of lines) if (line.trim()) yield JSON.parse(line);
  }
  if (buffered.trim()) yield JSON.parse(buffered);
}

function base64url(text) {
  const bytes = new TextEncoder().encode(text);
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

// A browser cannot set Authorization on a WebSocket: the token travels as a subprotocol
// ("vox.bearer.<base64url>") next to "vox", which the server selects.
export function openSocket(path) {
  const url = new URL(path, location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  const token = getToken();
  const protocols = token ? ["vox", `vox.bearer.${base64url(token)}`] : ["vox"];
  const socket = new WebSocket(url, protocols);
  socket.binaryType = "arraybuffer";
  return socket;
}

// Why a socket closed before its session ended: the server's error event if it sent one,
// else what an HTTP call says (a refused handshake, 401 or 403, is invisible to WebSocket).
export async function socketFailure(event, opened) {
  if (opened) return `the connection closed (code ${event.code}${event.reason ? `: ${event.reason}` : ""})`;
  try {
    await request("/api/ps");
  } catch (exc) {
    return exc.message;
  }
  return `the WebSocket connection was refused (code ${event.code}); the server log says why`;
}

export function humanBytes(n) {
  if (!n && n !== 0) return "";
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i += 1;
  }
  return `${n.toFixed(i && n < 10 ? 1 : 0)} ${units[i]}`;
}

// A file for the user to keep, from a Blob.
export function saveBlob(blob, name) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 60_000);
}

// The page-wide alert: the API's message, or nothing.
export function showError(message) {
  const el = document.getElementById("error");
  el.textContent = message || "";
  el.hidden = !message;
}
