/**
 * PresenceHeartbeat: keeps one browser tab's user present in DAARION City (SPEC §8, §14).
 *
 * One instance per tab (a "device" to the gateway). It POSTs
 * `/internal/matrix/presence/online` with the user's JWT every `heartbeat_seconds`
 * (the server says how often in each answer), reports `away` after `awayAfterMs`
 * without input and `online` at the next input, and says `offline` through
 * `navigator.sendBeacon` when the page is hidden or unloaded — a beacon is the only
 * request a closing page can still make. Everything is framework-free; the React hook
 * in `./react` is a thin wrapper.
 *
 * Why the send rules look the way they do:
 * - The gateway allows about one heartbeat per second per device (burst 5), so input
 *   never sends by itself: only a *change* of status does, and sends are spaced by
 *   `minSendIntervalMs` (coalesced into one timer).
 * - Network errors and 5xx back off exponentially with jitter, so that thousands of
 *   tabs do not come back in lock-step after an outage; a 429 waits `Retry-After`.
 * - A 401 means the token is no longer good: the heartbeat stops and calls
 *   `onUnauthorized` (refreshing tokens is the application's business).
 */

import { userIdFromToken } from "./token.js";
import type { HeartbeatAnswer, PresenceStatus } from "./types.js";

export const HEARTBEAT_PATH = "/internal/matrix/presence/online";
export const DEVICE_STORAGE_KEY = "daarion.city.presence.device_id";

/** The browser facilities the heartbeat uses; injectable for tests and non-window hosts. */
export interface PresenceEnvironment {
  /** Receives pointer/key/scroll/focus input and `pagehide`/`pageshow`. */
  window: EventTarget;
  /** Receives `visibilitychange`; its `visibilityState` is read. */
  document: EventTarget & { readonly visibilityState: DocumentVisibilityState };
  /** Per-tab storage for the device id (sessionStorage); null = keep it in memory. */
  storage: Pick<Storage, "getItem" | "setItem"> | null;
  fetch: typeof fetch;
  /** `navigator.sendBeacon`, bound; null falls back to `fetch(..., {keepalive: true})`. */
  sendBeacon: ((url: string, data: string) => boolean) | null;
  now: () => number;
  random: () => number;
  setTimeout: (fn: () => void, ms: number) => unknown;
  clearTimeout: (handle: unknown) => void;
}

export interface PresenceHeartbeatOptions {
  /** The user's JWT (HS256, `sub` = the city user id). */
  token: string;
  /** Defaults to the token's `sub`. */
  userId?: string;
  /** Gateway origin, e.g. `https://city.example`; "" (default) = this page's origin. */
  baseUrl?: string;
  /** No input for this long → `away` (default 5 minutes, as the gateway's default). */
  awayAfterMs?: number;
  /** Interval used until the server's first answer says otherwise (default 20 s). */
  heartbeatSeconds?: number;
  /** Never two sends closer than this (default 1100 ms; the gateway allows ~1/s). */
  minSendIntervalMs?: number;
  /** First retry delay after a network error or 5xx (default 1 s), doubled each time. */
  backoffBaseMs?: number;
  /** Longest retry delay (default 60 s). */
  backoffMaxMs?: number;
  /** A fixed device id; by default one per tab, kept in sessionStorage. */
  deviceId?: string;
  /** Called with each status the server confirms (and "offline" when hidden/closed). */
  onStatus?: (status: PresenceStatus, answer: HeartbeatAnswer | null) => void;
  /** Called once on 401; the heartbeat has stopped. Start a new one with a fresh token. */
  onUnauthorized?: (error: HeartbeatError) => void;
  /** Called for every other failure (network, 5xx, 429, other 4xx). */
  onError?: (error: HeartbeatError) => void;
  /** Replace browser facilities (tests). */
  env?: Partial<PresenceEnvironment>;
}

export class HeartbeatError extends Error {
  constructor(
    message: string,
    /** HTTP status; 0 for a network error. */
    readonly status: number,
    readonly code: string | null = null,
    readonly retryAfterMs: number | null = null,
  ) {
    super(message);
    this.name = "HeartbeatError";
  }
}

/** The input that counts as activity. `visibilitychange` → visible counts too. */
export const ACTIVITY_EVENTS = [
  "pointerdown",
  "pointermove",
  "keydown",
  "wheel",
  "scroll",
  "touchstart",
  "focus",
] as const;

type Phase = "idle" | "running" | "hidden" | "stopped";

export class PresenceHeartbeat {
  readonly userId: string;
  readonly deviceId: string;

  private readonly env: PresenceEnvironment;
  private readonly url: string;
  private readonly awayAfterMs: number;
  private readonly minSendIntervalMs: number;
  private readonly backoffBaseMs: number;
  private readonly backoffMaxMs: number;
  private intervalMs: number;

  private phase: Phase = "idle";
  private lastActivity = 0;
  private lastSentAt = Number.NEGATIVE_INFINITY;
  /** The status the server last confirmed for this device ("offline" before any). */
  private reported: PresenceStatus = "offline";
  private failures = 0;
  /** Set while a failure's retry delay runs: input must not cut it short. */
  private backingOff = false;
  private inFlight: AbortController | null = null;
  /** A send was wanted while one was in flight: send again when it lands. */
  private resendWanted = false;
  /** Bumped whenever the page hides/stops, so that late answers are ignored. */
  private generation = 0;

  private sendTimer: unknown = null;
  private sendDue = Number.POSITIVE_INFINITY;
  private awayTimer: unknown = null;
  private readonly listeners: Array<[EventTarget, string, EventListener]> = [];

  constructor(private readonly options: PresenceHeartbeatOptions) {
    this.env = { ...browserEnvironment(), ...options.env } as PresenceEnvironment;
    this.userId = options.userId ?? userIdFromToken(options.token);
    this.url = `${(options.baseUrl ?? "").replace(/\/$/, "")}${HEARTBEAT_PATH}`;
    this.awayAfterMs = options.awayAfterMs ?? 5 * 60_000;
    this.intervalMs = (options.heartbeatSeconds ?? 20) * 1000;
    this.minSendIntervalMs = options.minSendIntervalMs ?? 1100;
    this.backoffBaseMs = options.backoffBaseMs ?? 1000;
    this.backoffMaxMs = options.backoffMaxMs ?? 60_000;
    this.deviceId = options.deviceId ?? tabDeviceId(this.env.storage, this.env.random);
  }

  /** The status this tab currently reports (`offline` while hidden or stopped). */
  get status(): PresenceStatus {
    if (this.phase !== "running") return "offline";
    return this.idleFor() >= this.awayAfterMs ? "away" : "online";
  }

  get running(): boolean {
    return this.phase === "running" || this.phase === "hidden";
  }

  /** Attach the listeners and send the first heartbeat (if the page is visible). */
  start(): this {
    if (this.phase !== "idle") return this;
    this.lastActivity = this.env.now();
    for (const name of ACTIVITY_EVENTS) this.listen(this.env.window, name, this.onActivity);
    this.listen(this.env.window, "pagehide", this.onPageHide);
    this.listen(this.env.window, "pageshow", this.onPageShow);
    this.listen(this.env.document, "visibilitychange", this.onVisibility);
    if (this.env.document.visibilityState === "hidden") {
      this.phase = "hidden";
    } else {
      this.phase = "running";
      // At once, not on a timer: opening the page is what makes the user online.
      void this.send();
    }
    return this;
  }

  /**
   * Remove every listener and timer and abort a request in flight. By default the
   * device also says `offline` (a beacon), so that the user leaves without waiting
   * for the gateway's TTL; pass `{ sendOffline: false }` to stop silently.
   */
  stop(opts: { sendOffline?: boolean } = {}): void {
    if (this.phase === "stopped") return;
    const wasVisible = this.phase === "running";
    this.phase = "stopped";
    this.generation++;
    for (const [target, name, fn] of this.listeners.splice(0)) {
      target.removeEventListener(name, fn);
    }
    this.clearSend();
    this.clearAway();
    this.inFlight?.abort();
    this.inFlight = null;
    if ((opts.sendOffline ?? true) && wasVisible && this.reported !== "offline") {
      this.beaconOffline();
    }
  }

  // --- events -------------------------------------------------------------------------

  private readonly onActivity = (): void => {
    if (this.phase !== "running") return;
    const wasAway = this.status === "away";
    this.lastActivity = this.env.now();
    // Only a change of status is worth a request; the next beat carries the rest.
    if (wasAway || this.reported === "away") this.wantSend();
  };

  private readonly onVisibility = (): void => {
    if (this.env.document.visibilityState === "hidden") this.goHidden();
    else this.goVisible();
  };

  private readonly onPageHide = (): void => {
    this.goHidden();
  };

  private readonly onPageShow = (event: Event): void => {
    // Back from the back/forward cache: the page lives again.
    if ((event as PageTransitionEvent).persisted) this.goVisible();
  };

  private goHidden(): void {
    if (this.phase !== "running") return;
    this.phase = "hidden";
    this.generation++;
    this.clearSend();
    this.clearAway();
    this.inFlight?.abort();
    this.inFlight = null;
    this.beaconOffline();
  }

  private goVisible(): void {
    if (this.phase !== "hidden") return;
    this.phase = "running";
    this.lastActivity = this.env.now(); // coming back to a tab is activity
    this.failures = 0;
    this.backingOff = false;
    this.wantSend();
  }

  // --- sending ------------------------------------------------------------------------

  /** Send soon: now if the last send was long enough ago, else when it may. */
  private wantSend(): void {
    if (this.backingOff) return; // the retry timer will send the current status
    if (this.inFlight) {
      this.resendWanted = true;
      return;
    }
    const wait = Math.max(0, this.lastSentAt + this.minSendIntervalMs - this.env.now());
    this.scheduleSend(wait);
  }

  private scheduleSend(delayMs: number): void {
    const due = this.env.now() + delayMs;
    if (this.sendTimer !== null && due >= this.sendDue) return; // an earlier one is set
    this.clearSend();
    this.sendDue = due;
    this.sendTimer = this.env.setTimeout(() => {
      this.sendTimer = null;
      this.sendDue = Number.POSITIVE_INFINITY;
      void this.send();
    }, delayMs);
  }

  private async send(): Promise<void> {
    if (this.phase !== "running") return;
    const generation = this.generation;
    const status = this.status;
    const controller = new AbortController();
    this.inFlight = controller;
    this.lastSentAt = this.env.now();
    this.clearAway();
    let response: Response;
    try {
      response = await this.env.fetch(this.url, {
        method: "POST",
        headers: {
          "Content-Type": "application/json",
          Authorization: `Bearer ${this.options.token}`,
        },
        body: JSON.stringify(this.body(status)),
        signal: controller.signal,
      });
    } catch (error) {
      if (generation !== this.generation) return;
      this.inFlight = null;
      this.retryLater(new HeartbeatError(`heartbeat failed: ${String(error)}`, 0));
      return;
    }
    if (generation !== this.generation) return;
    this.inFlight = null;
    await this.handleAnswer(response, status, generation);
  }

  private async handleAnswer(
    response: Response,
    sent: PresenceStatus,
    generation: number,
  ): Promise<void> {
    if (response.ok) {
      let answer: HeartbeatAnswer | null = null;
      try {
        answer = (await response.json()) as HeartbeatAnswer;
      } catch {
        answer = null;
      }
      if (generation !== this.generation) return;
      this.failures = 0;
      this.backingOff = false;
      if (answer && typeof answer.heartbeat_seconds === "number" && answer.heartbeat_seconds > 0) {
        this.intervalMs = answer.heartbeat_seconds * 1000;
      }
      this.reported = sent;
      this.options.onStatus?.(answer?.status ?? sent, answer);
      this.afterSend();
      return;
    }
    const error = await errorOf(response);
    if (generation !== this.generation) return;
    if (response.status === 401) {
      this.stop({ sendOffline: false });
      this.options.onUnauthorized?.(error);
      return;
    }
    if (response.status === 429 || response.status >= 500 || response.status === 408) {
      this.retryLater(error);
      return;
    }
    // 403/404/413/415/422: sending the same again cannot help.
    this.stop({ sendOffline: false });
    this.options.onError?.(error);
  }

  /** After a good answer: the next beat, an input that came meanwhile, the away timer. */
  private afterSend(): void {
    if (this.phase !== "running") return;
    if (this.resendWanted || this.status !== this.reported) {
      this.resendWanted = false;
      this.wantSend();
    }
    this.scheduleSend(this.intervalMs);
    this.armAway();
  }

  private retryLater(error: HeartbeatError): void {
    this.options.onError?.(error);
    if (this.phase !== "running") return;
    this.failures++;
    let delay: number;
    if (error.retryAfterMs !== null) {
      delay = error.retryAfterMs;
    } else {
      // "Equal jitter": half the exponential step, plus a random other half.
      const step = Math.min(this.backoffMaxMs, this.backoffBaseMs * 2 ** (this.failures - 1));
      delay = step / 2 + this.env.random() * (step / 2);
    }
    this.resendWanted = false;
    this.backingOff = true;
    this.clearSend();
    this.scheduleSend(delay);
  }

  /** Fire when the user would turn away, so that `away` is sent without waiting a beat. */
  private armAway(): void {
    this.clearAway();
    if (this.phase !== "running" || this.reported === "away") return;
    const remaining = Math.max(0, this.awayAfterMs - this.idleFor());
    this.awayTimer = this.env.setTimeout(() => {
      this.awayTimer = null;
      if (this.phase !== "running") return;
      if (this.status === "away") this.wantSend();
      else this.armAway(); // there was input meanwhile: wait for the rest
    }, remaining);
  }

  private body(status: PresenceStatus): Record<string, unknown> {
    return {
      user_id: this.userId,
      device_id: this.deviceId,
      status,
      last_active_ago: Math.max(0, Math.round(this.idleFor())),
    };
  }

  /** `offline` as a beacon: text/plain (no preflight), the token in the body. */
  private beaconOffline(): void {
    const payload = JSON.stringify({
      user_id: this.userId,
      device_id: this.deviceId,
      status: "offline",
      access_token: this.options.token,
    });
    let queued = false;
    try {
      queued = this.env.sendBeacon?.(this.url, payload) ?? false;
    } catch {
      queued = false;
    }
    if (!queued) {
      // No beacon (or its queue is full): a keepalive fetch outlives the page too.
      void this.env
        .fetch(this.url, {
          method: "POST",
          headers: { "Content-Type": "text/plain" },
          body: payload,
          keepalive: true,
        })
        .catch(() => undefined);
    }
    this.reported = "offline";
    this.options.onStatus?.("offline", null);
  }

  private idleFor(): number {
    return this.env.now() - this.lastActivity;
  }

  private listen(target: EventTarget, name: string, fn: EventListener): void {
    target.addEventListener(name, fn, { passive: true, capture: true });
    this.listeners.push([target, name, fn]);
  }

  private clearSend(): void {
    if (this.sendTimer !== null) this.env.clearTimeout(this.sendTimer);
    this.sendTimer = null;
    this.sendDue = Number.POSITIVE_INFINITY;
  }

  private clearAway(): void {
    if (this.awayTimer !== null) this.env.clearTimeout(this.awayTimer);
    this.awayTimer = null;
  }
}

/** The real browser's facilities (evaluated lazily, so importing never touches `window`). */
export function browserEnvironment(): Partial<PresenceEnvironment> {
  const g = globalThis as unknown as {
    window?: Window;
    document?: Document;
    sessionStorage?: Storage;
    navigator?: Navigator;
  };
  let storage: Storage | null = null;
  try {
    storage = g.sessionStorage ?? null; // throws in some sandboxed iframes
  } catch {
    storage = null;
  }
  return {
    window: g.window,
    document: g.document,
    storage,
    fetch: (...args: Parameters<typeof fetch>) => globalThis.fetch(...args),
    sendBeacon:
      g.navigator && typeof g.navigator.sendBeacon === "function"
        ? (url: string, data: string) => g.navigator!.sendBeacon(url, data)
        : null,
    now: () => Date.now(),
    random: () => Math.random(),
    setTimeout: (fn: () => void, ms: number) => globalThis.setTimeout(fn, ms),
    clearTimeout: (handle: unknown) =>
      globalThis.clearTimeout(handle as ReturnType<typeof setTimeout>),
  };
}

/**
 * This tab's device id. sessionStorage survives reloads of the tab but is not shared
 * with other tabs, so each tab is its own device (a duplicated tab copies it, and
 * then the two share one device — harmless: both keep it alive).
 */
export function tabDeviceId(
  storage: Pick<Storage, "getItem" | "setItem"> | null,
  random: () => number = Math.random,
): string {
  const stored = safe(() => storage?.getItem(DEVICE_STORAGE_KEY) ?? null);
  if (stored) return stored;
  const id = `web_${Date.now().toString(36)}_${Math.floor(random() * 2 ** 48).toString(36)}`;
  safe(() => storage?.setItem(DEVICE_STORAGE_KEY, id));
  return id;
}

function safe<T>(fn: () => T): T | null {
  try {
    return fn();
  } catch {
    return null;
  }
}

async function errorOf(response: Response): Promise<HeartbeatError> {
  let code: string | null = null;
  let message = `heartbeat answered ${response.status}`;
  try {
    const body = (await response.json()) as { code?: string; message?: string };
    code = body.code ?? null;
    if (body.message) message = body.message;
  } catch {
    /* not JSON: keep the status line */
  }
  return new HeartbeatError(
    message,
    response.status,
    code,
    retryAfterMs(response.headers.get("Retry-After")),
  );
}

/** `Retry-After` in seconds or as an HTTP date → milliseconds (null when absent/bad). */
export function retryAfterMs(value: string | null, now: number = Date.now()): number | null {
  if (!value) return null;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(value);
  return Number.isNaN(date) ? null : Math.max(0, date - now);
}
