/** Reading (never verifying) the user's JWT: the browser only needs its `sub` and `exp`. */

export interface TokenClaims {
  sub?: string;
  name?: string;
  exp?: number;
}

/** The claims of a JWT, or `{}` when it is not one (the server is the judge). */
export function tokenClaims(token: string): TokenClaims {
  const part = token.split(".")[1];
  if (!part) return {};
  try {
    const base64 = part.replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
    const json = decodeURIComponent(
      Array.from(atob(padded), (c) => "%" + c.charCodeAt(0).toString(16).padStart(2, "0")).join(""),
    );
    const claims = JSON.parse(json) as unknown;
    return claims && typeof claims === "object" ? (claims as TokenClaims) : {};
  } catch {
    return {};
  }
}

/** The city user id (`sub`) of a token; throws when there is none. */
export function userIdFromToken(token: string): string {
  const sub = tokenClaims(token).sub;
  if (typeof sub !== "string" || !sub) {
    throw new Error("the token has no `sub` claim: pass userId explicitly");
  }
  return sub;
}
