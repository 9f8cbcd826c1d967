// The Edge API as the portal uses it (http.js): the token and the role of the person logged in.
import { ApiError, apiClient } from "./http.js";

const KEY = "paradrop.token";
const ROLE = "paradrop.role";

export { ApiError };
export const { token, forget, call, get, socket } = apiClient(KEY, () => sessionStorage.removeItem(ROLE));
// Administrators and owners read the node's log and its host configuration.
export function isAdmin() { return ["admin", "owner"].includes(sessionStorage.getItem(ROLE)); }

export async function login(username, password) {
  const body = await call("POST", "/api/v1/auth/local", { username, password }, false);
  sessionStorage.setItem(KEY, body.token);
  sessionStorage.setItem(ROLE, body.role);
}
