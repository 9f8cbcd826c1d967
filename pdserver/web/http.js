// What the node portal and the controller's dashboard share of their APIs: every call carries the token of the
// person logged in (sessionStorage under ``key``); a 401 forgets it and tells the page to show the login again.
export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.field = error.field;
  }
}

// ``forgetting``: what else the page keeps about the person, forgotten with the token.
export function apiClient(key, forgetting = () => {}) {
  const token = () => sessionStorage.getItem(key);
  const forget = () => { sessionStorage.removeItem(key); forgetting(); };

  async function send(method, path, body, authenticated) {
    const headers = {};
    if (authenticated) headers["Authorization"] = `Bearer ${token()}`;
    let payload;
    if (body instanceof Blob) {  // a chute project archive (.tar or .tar.gz)
      headers["Content-Type"] = "application/gzip";
      payload = body;
    } else if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      payload = JSON.stringify(body);
    }
    const response = await fetch(path, { method, headers, body: payload, cache: "no-store" });
    const text = await response.text();
    const parsed = text ? JSON.parse(text) : null;
    if (!response.ok) {
      if (response.status === 401 && authenticated) {
        forget();
        window.dispatchEvent(new Event("paradrop-logout"));
      }
      throw new ApiError(response.status, parsed);
    }
    return { parsed, response };
  }

  const call = async (method, path, body, authenticated = true) => (await send(method, path, body, authenticated)).parsed;

  // Every page of a paged list: the server names the next one in a Link header (rel="next").
  async function getAll(path) {
    const items = [];
    for (let next = path; next;) {
      const { parsed, response } = await send("GET", next, undefined, true);
      items.push(...parsed);
      const link = /<([^>]*)>;\s*rel="next"/.exec(response.headers.get("Link") || "");
      next = link && new URL(link[1], new URL(next, location.href)).href;  // relative to the page it came with
    }
    return items;
  }

  // A websocket: the token travels as a subprotocol (a browser cannot set Authorization here).
  function socket(path, onMessage, onClose) {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}${path}`, ["paradrop.bearer", token()]);
    ws.addEventListener("message", (event) => onMessage(JSON.parse(event.data)));
    ws.addEventListener("close", (event) => onClose && onClose(event));
    return ws;
  }

  return { token, forget, call, get: (path) => call("GET", path), getAll, socket };
}
