/** Errors as the gateway reports them: `{code, message}` under an HTTP status (SPEC §5). */

import { retryAfterMs } from "./presence.js";

export class CityApiError extends Error {
  constructor(
    /** HTTP status; 0 when the request never got an answer (network, CORS, abort). */
    readonly status: number,
    /** The gateway's stable snake_case code, e.g. `rate_limited`, `agent_timeout`. */
    readonly code: string,
    message: string,
    /** From `Retry-After` (429, some 503), in milliseconds. */
    readonly retryAfterMs: number | null = null,
  ) {
    super(message);
    this.name = "CityApiError";
  }

  /** Worth retrying the same request later (network, 429, 5xx). */
  get retryable(): boolean {
    return this.status === 0 || this.status === 429 || this.status >= 500;
  }

  static async from(response: Response): Promise<CityApiError> {
    let code = `http_${response.status}`;
    let message = `${response.status} ${response.statusText}`.trim();
    try {
      const body = (await response.json()) as { code?: unknown; message?: unknown };
      if (typeof body.code === "string") code = body.code;
      if (typeof body.message === "string") message = body.message;
    } catch {
      /* not JSON */
    }
    return new CityApiError(
      response.status,
      code,
      message,
      retryAfterMs(response.headers.get("Retry-After")),
    );
  }
}
