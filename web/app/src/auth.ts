/**
 * The app's sign-in: a JWT handed over in the URL fragment (`/app/#token=…`, as the
 * `make dev` ready line prints it). The fragment never reaches the server or its logs;
 * the token is moved to sessionStorage (this tab only) and removed from the address bar.
 */
import { tokenClaims } from "@daarion/city-client";

const KEY = "daarion.city.token";

export function takeToken(): string | null {
  const hash = window.location.hash.replace(/^#/, "");
  const params = new URLSearchParams(hash.startsWith("/") ? "" : hash);
  const fromUrl = params.get("token");
  if (fromUrl) {
    sessionStorage.setItem(KEY, fromUrl);
    history.replaceState(null, "", `${window.location.pathname}${window.location.search}#/`);
    return fromUrl;
  }
  const stored = sessionStorage.getItem(KEY);
  if (!stored) return null;
  const exp = tokenClaims(stored).exp;
  if (typeof exp === "number" && exp * 1000 < Date.now()) {
    sessionStorage.removeItem(KEY);
    return null;
  }
  return stored;
}

export function signOut(): void {
  sessionStorage.removeItem(KEY);
}
