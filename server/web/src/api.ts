// fetch wrapper: same-origin cookie auth, JSON in and out, and one place
// that turns a 401 into "your session ended" on the login page.
import { app } from "./store";

export class ApiError extends Error {
  constructor(
    public status: number,
    message: string,
    public body: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

export function sessionExpired(message: string): void {
  if (app.authed === false && app.expiredMessage === message) return;
  app.authed = false;
  app.expiredMessage = message;
  app.changed();
}

export async function api<T = unknown>(path: string, init: { method?: string; body?: unknown; quiet401?: boolean } = {}): Promise<T> {
  const headers: Record<string, string> = { accept: "application/json" };
  let body: string | undefined;
  if (init.body !== undefined) {
    headers["content-type"] = "application/json";
    body = JSON.stringify(init.body);
  }
  let res: Response;
  try {
    res = await fetch(path, { method: init.method || "GET", headers, body, credentials: "same-origin", cache: "no-store" });
  } catch {
    throw new ApiError(0, "the server cannot be reached");
  }
  let data: Record<string, unknown> = {};
  const text = await res.text();
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { error: text.slice(0, 200) };
    }
  }
  if (res.status === 401 && path !== "/api/auth/login" && !init.quiet401) {
    sessionExpired("Your session has ended. Sign in again.");
  }
  if (!res.ok) {
    throw new ApiError(res.status, typeof data.error === "string" ? data.error : `HTTP ${res.status}`, data);
  }
  return data as T;
}
