// The controller's HTTP API as the dashboard uses it (http.js, shared with the node portal).
import { ApiError, apiClient } from "./http.js";

const KEY = "paradrop.controller.token";

export { ApiError };
export const { token, forget, call, get, getAll, socket } = apiClient(KEY);

export async function login(username, password) {
  const body = await call("POST", "/api/v1/auth/login", { username, password }, false);
  sessionStorage.setItem(KEY, body.token);
}

export async function logout() {
  try {
    await call("POST", "/api/v1/auth/logout");
  } finally {
    forget();
  }
}
