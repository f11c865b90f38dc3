// The heartbeat's state machine with fake timers and a scripted server (no browser).
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { HEARTBEAT_PATH, PresenceHeartbeat, type PresenceHeartbeatOptions } from "../src/presence.js";

interface Sent {
  url: string;
  body: Record<string, unknown>;
  headers: Record<string, string>;
}

type Reply = { status: number; body?: unknown; headers?: Record<string, string> } | "network";

/** A fake page: event targets, a visibility flag, a scripted fetch and a beacon. */
class FakePage {
  window = new EventTarget();
  document = Object.assign(new EventTarget(), { visibilityState: "visible" as DocumentVisibilityState });
  sent: Sent[] = [];
  beacons: Array<{ url: string; body: Record<string, unknown> }> = [];
  replies: Reply[] = [];
  storage = new Map<string, string>();
  random = 0.5;

  fetch = vi.fn(async (url: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const headers = (init?.headers ?? {}) as Record<string, string>;
    this.sent.push({ url: String(url), body: JSON.parse(String(init?.body)), headers });
    const reply = this.replies.shift() ?? { status: 200 };
    if (reply === "network") throw new TypeError("Failed to fetch");
    const sentStatus = this.sent.at(-1)!.body.status;
    const body = reply.body ?? { user_id: "u_1", status: sentStatus, matrix_user_id: null, heartbeat_seconds: 20 };
    return fakeResponse(reply.status, body, reply.headers);
  });

  env(): PresenceHeartbeatOptions["env"] {
    return {
      window: this.window,
      document: this.document,
      storage: {
        getItem: (k: string) => this.storage.get(k) ?? null,
        setItem: (k: string, v: string) => void this.storage.set(k, v),
      },
      fetch: this.fetch as unknown as typeof fetch,
      sendBeacon: (url: string, data: string) => {
        this.beacons.push({ url, body: JSON.parse(data) });
        return true;
      },
      now: () => Date.now(),
      random: () => this.random,
      setTimeout: (fn: () => void, ms: number) => setTimeout(fn, ms),
      clearTimeout: (h: unknown) => clearTimeout(h as ReturnType<typeof setTimeout>),
    };
  }

  setVisibility(state: DocumentVisibilityState): void {
    this.document.visibilityState = state;
    this.document.dispatchEvent(new Event("visibilitychange"));
  }

  statuses(): unknown[] {
    return this.sent.map((s) => s.body.status);
  }
}

/** A plain Response stand-in: a real one reads its body on timers that are faked here. */
function fakeResponse(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return {
    ok: status >= 200 && status < 300,
    status,
    headers: new Headers(headers),
    json: async () => body,
  } as unknown as Response;
}

// A JWT whose payload is {"sub":"u_1"} (the signature is the server's business).
const TOKEN = `e30.${btoa(JSON.stringify({ sub: "u_1" })).replace(/=+$/, "")}.sig`;

let page: FakePage;
let hb: PresenceHeartbeat | null;

function start(extra: Partial<PresenceHeartbeatOptions> = {}): PresenceHeartbeat {
  hb = new PresenceHeartbeat({ token: TOKEN, env: page.env(), ...extra }).start();
  return hb;
}

/** Let the fake fetch's promises settle after timers fire. */
async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve();
  await vi.advanceTimersByTimeAsync(0);
}

beforeEach(() => {
  vi.useFakeTimers();
  vi.setSystemTime(new Date("2025-01-01T00:00:00Z"));
  page = new FakePage();
  hb = null;
});

afterEach(() => {
  hb?.stop({ sendOffline: false });
  vi.useRealTimers();
});

describe("PresenceHeartbeat", () => {
  it("sends online at once, with the JWT, the tab's device id and last_active_ago", async () => {
    const heartbeat = start();
    await settle();
    expect(page.sent).toHaveLength(1);
    const [first] = page.sent;
    expect(first!.url).toBe(HEARTBEAT_PATH);
    expect(first!.headers.Authorization).toBe(`Bearer ${TOKEN}`);
    expect(first!.body).toMatchObject({ user_id: "u_1", status: "online", last_active_ago: 0 });
    expect(first!.body.device_id).toBe(heartbeat.deviceId);
    expect(page.storage.get("daarion.city.presence.device_id")).toBe(heartbeat.deviceId);
  });

  it("keeps the device id of the tab across instances (sessionStorage)", () => {
    const a = new PresenceHeartbeat({ token: TOKEN, env: page.env() });
    const b = new PresenceHeartbeat({ token: TOKEN, env: page.env() });
    expect(a.deviceId).toBe(b.deviceId);
  });

  it("beats every heartbeat_seconds from the server's answer", async () => {
    const answer = { user_id: "u_1", status: "online", matrix_user_id: null, heartbeat_seconds: 7 };
    page.replies.push({ status: 200, body: answer }, { status: 200, body: answer });
    start();
    await settle();
    await vi.advanceTimersByTimeAsync(6_900);
    expect(page.sent).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(200);
    expect(page.sent).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(7_000);
    expect(page.sent).toHaveLength(3);
  });

  it("goes away after 5 idle minutes, and online again on the next input", async () => {
    const statuses: string[] = [];
    start({ onStatus: (s) => statuses.push(s) });
    await settle();
    await vi.advanceTimersByTimeAsync(4 * 60_000 + 59_000);
    expect(page.statuses().every((s) => s === "online")).toBe(true);
    await vi.advanceTimersByTimeAsync(1_001);
    await settle();
    const last = page.sent.at(-1)!;
    expect(last.body.status).toBe("away");
    expect(last.body.last_active_ago).toBeGreaterThanOrEqual(300_000);

    // A key press well after the last beat: online at once.
    await vi.advanceTimersByTimeAsync(50_000);
    const before = page.sent.length;
    page.window.dispatchEvent(new Event("keydown"));
    await settle();
    expect(page.sent.length).toBe(before + 1);
    expect(page.sent.at(-1)!.body).toMatchObject({ status: "online", last_active_ago: 0 });
    expect(statuses).toContain("away");
  });

  it("input postpones away, and input alone sends nothing (coalesced)", async () => {
    start();
    await settle();
    for (let minute = 0; minute < 9; minute++) {
      await vi.advanceTimersByTimeAsync(60_000);
      for (let i = 0; i < 50; i++) page.window.dispatchEvent(new Event("pointermove"));
    }
    await settle();
    expect(page.statuses().every((s) => s === "online")).toBe(true);
    // 9 minutes at one beat per 20 s, plus the first: input added no request.
    expect(page.sent.length).toBe(1 + 27);
  });

  it("honours a custom awayAfterMs", async () => {
    start({ awayAfterMs: 30_000 });
    await settle();
    await vi.advanceTimersByTimeAsync(30_001);
    await settle();
    expect(page.sent.at(-1)!.body.status).toBe("away");
  });

  it("backs off with jitter on 5xx and network errors, then resumes", async () => {
    page.replies.push({ status: 503, body: { code: "unavailable", message: "down" } }, "network", "network", { status: 200 });
    const errors: number[] = [];
    start({ onError: (e) => errors.push(e.status), backoffBaseMs: 1000 });
    await settle();
    expect(page.sent).toHaveLength(1);
    // 1st retry: step 1000 ms, random 0.5 → 750 ms.
    await vi.advanceTimersByTimeAsync(749);
    expect(page.sent).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    await settle();
    expect(page.sent).toHaveLength(2);
    // 2nd: step 2000 → 1500 ms; with random 0 it would be 1000 ms.
    await vi.advanceTimersByTimeAsync(1_499);
    expect(page.sent).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(1);
    await settle();
    expect(page.sent).toHaveLength(3);
    // 3rd: step 4000 → 3000 ms, then the 200 puts it back on the 20 s beat.
    await vi.advanceTimersByTimeAsync(3_000);
    await settle();
    expect(page.sent).toHaveLength(4);
    expect(errors).toEqual([503, 0, 0]);
    await vi.advanceTimersByTimeAsync(19_999);
    expect(page.sent).toHaveLength(4);
    await vi.advanceTimersByTimeAsync(1);
    expect(page.sent).toHaveLength(5);
  });

  it("jitter spreads retries: the delay depends on the random draw", async () => {
    page.random = 0;
    page.replies.push("network");
    start({ backoffBaseMs: 1000 });
    await settle();
    await vi.advanceTimersByTimeAsync(500); // step 1000 * (0.5 + 0 * 0.5)
    await settle();
    expect(page.sent).toHaveLength(2);
  });

  it("input does not cut a backoff short", async () => {
    page.replies.push("network");
    start({ backoffBaseMs: 10_000, awayAfterMs: 1_000 });
    await settle();
    for (let i = 0; i < 20; i++) {
      page.window.dispatchEvent(new Event("keydown"));
      await vi.advanceTimersByTimeAsync(100);
    }
    expect(page.sent).toHaveLength(1);
  });

  it("waits Retry-After on 429", async () => {
    page.replies.push({ status: 429, body: { code: "rate_limited", message: "slow down" }, headers: { "Retry-After": "4" } });
    start();
    await settle();
    await vi.advanceTimersByTimeAsync(3_999);
    expect(page.sent).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(page.sent).toHaveLength(2);
  });

  it("stops on 401, calls onUnauthorized, and leaves no timer or listener", async () => {
    page.replies.push({ status: 401, body: { code: "unauthorized", message: "token expired" } });
    const unauthorized = vi.fn();
    const remove = vi.spyOn(page.window, "removeEventListener");
    const heartbeat = start({ onUnauthorized: unauthorized });
    await settle();
    expect(unauthorized).toHaveBeenCalledTimes(1);
    expect(unauthorized.mock.calls[0]![0].code).toBe("unauthorized");
    expect(heartbeat.running).toBe(false);
    expect(vi.getTimerCount()).toBe(0);
    expect(remove).toHaveBeenCalled();
    await vi.advanceTimersByTimeAsync(10 * 60_000);
    page.window.dispatchEvent(new Event("keydown"));
    expect(page.sent).toHaveLength(1);
    expect(page.beacons).toHaveLength(0);
  });

  it("says offline by beacon (text body with access_token) when hidden, online when visible", async () => {
    const heartbeat = start();
    await settle();
    page.setVisibility("hidden");
    expect(page.beacons).toHaveLength(1);
    expect(page.beacons[0]!.url).toBe(HEARTBEAT_PATH);
    expect(page.beacons[0]!.body).toEqual({
      user_id: "u_1",
      device_id: heartbeat.deviceId,
      status: "offline",
      access_token: TOKEN,
    });
    // Hidden: no beats at all.
    await vi.advanceTimersByTimeAsync(5 * 60_000);
    expect(page.sent).toHaveLength(1);
    expect(vi.getTimerCount()).toBe(0);

    page.setVisibility("visible");
    await settle();
    expect(page.sent).toHaveLength(2);
    expect(page.sent[1]!.body).toMatchObject({ status: "online", last_active_ago: 0 });
  });

  it("says offline by beacon on pagehide, once", async () => {
    start();
    await settle();
    page.window.dispatchEvent(new Event("pagehide"));
    page.setVisibility("hidden");
    expect(page.beacons.map((b) => b.body.status)).toEqual(["offline"]);
  });

  it("falls back to a keepalive fetch when there is no sendBeacon", async () => {
    const env = { ...page.env(), sendBeacon: null };
    hb = new PresenceHeartbeat({ token: TOKEN, env }).start();
    await settle();
    page.window.dispatchEvent(new Event("pagehide"));
    await settle();
    const last = page.fetch.mock.calls.at(-1)!;
    expect((last[1] as RequestInit).keepalive).toBe(true);
    expect(JSON.parse(String((last[1] as RequestInit).body))).toMatchObject({ status: "offline", access_token: TOKEN });
  });

  it("stop() removes every timer and listener and says offline", async () => {
    const heartbeat = start();
    await settle();
    expect(vi.getTimerCount()).toBeGreaterThan(0);
    heartbeat.stop();
    expect(vi.getTimerCount()).toBe(0);
    expect(page.beacons.map((b) => b.body.status)).toEqual(["offline"]);
    page.window.dispatchEvent(new Event("keydown"));
    page.setVisibility("hidden");
    page.setVisibility("visible");
    await vi.advanceTimersByTimeAsync(60 * 60_000);
    expect(page.sent).toHaveLength(1);
    expect(page.beacons).toHaveLength(1);
  });

  it("stop() during a request in flight schedules nothing afterwards", async () => {
    let release!: () => void;
    page.fetch.mockImplementationOnce(
      (_url, init) =>
        new Promise<Response>((resolve, reject) => {
          release = () => resolve(fakeResponse(200, {}));
          init?.signal?.addEventListener("abort", () => reject(new DOMException("aborted", "AbortError")));
        }),
    );
    const heartbeat = start();
    await vi.advanceTimersByTimeAsync(0);
    heartbeat.stop({ sendOffline: false });
    release();
    await settle();
    expect(vi.getTimerCount()).toBe(0);
  });

  it("a page that starts hidden sends nothing until it is shown", async () => {
    page.document.visibilityState = "hidden";
    start();
    await settle();
    expect(page.sent).toHaveLength(0);
    page.setVisibility("visible");
    await settle();
    expect(page.statuses()).toEqual(["online"]);
  });

  it("a fatal 4xx (403) stops and reports through onError", async () => {
    page.replies.push({ status: 403, body: { code: "forbidden", message: "not you" } });
    const onError = vi.fn();
    start({ onError });
    await settle();
    expect(onError.mock.calls[0]![0].status).toBe(403);
    expect(vi.getTimerCount()).toBe(0);
  });
});
