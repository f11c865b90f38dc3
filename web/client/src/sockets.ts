/**
 * The two WebSockets (SPEC §7), each reconnecting with backoff and jitter.
 *
 * - RoomSocket: `/ws/city/rooms/{room}`; on every (re)connect it re-joins the extra
 *   rooms joined with `join()` and re-sends messages not yet seen echoed, with their
 *   original `client_msg_id`, so a reconnect never loses or doubles a message.
 * - PresenceSocket: `/ws/city/presence`; `presence.update` on transitions.
 *
 * Close 4401 (bad or expired token) and 4404 (unknown room) are final: no reconnect,
 * `onClose` says why. Anything else reconnects.
 */

import { newClientMsgId } from "./ids.js";
import type {
  PresenceClientFrame,
  PresenceServerFrame,
  RoomClientFrame,
  RoomServerFrame,
} from "./types.js";

export type SocketState = "connecting" | "open" | "closed";

export interface SocketOptions {
  /** First reconnect delay (default 500 ms), doubled up to `maxBackoffMs` (default 30 s). */
  backoffBaseMs?: number;
  maxBackoffMs?: number;
  /** Ping interval, keeps proxies from closing an idle socket (default 25 s). */
  pingMs?: number;
  onState?: (state: SocketState) => void;
  /** A final close (4401/4404) or `close()`: no more reconnects. */
  onClose?: (code: number, reason: string) => void;
  WebSocket?: typeof WebSocket;
}

const FINAL_CODES = new Set([4401, 4403, 4404]);

abstract class ReconnectingSocket<In extends { event: string }, Out> {
  state: SocketState = "connecting";
  private ws: WebSocket | null = null;
  private failures = 0;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private pingTimer: ReturnType<typeof setInterval> | null = null;
  private closed = false;
  private readonly handlers = new Set<(frame: In) => void>();

  constructor(
    private readonly url: string,
    protected readonly options: SocketOptions,
  ) {
    queueMicrotask(() => this.connect());
  }

  /** Listen to every frame; returns the unsubscribe function. */
  on(handler: (frame: In) => void): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.clearTimers();
    this.ws?.close(1000, "client closed");
    this.ws = null;
    this.setState("closed");
    this.options.onClose?.(1000, "client closed");
  }

  protected sendFrame(frame: Out): boolean {
    if (this.ws && this.ws.readyState === 1) {
      this.ws.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  /** Called on every open: re-join, re-send what was not confirmed. */
  protected abstract resubscribe(): void;

  protected received(_frame: In): void {}

  private connect(): void {
    if (this.closed) return;
    const Impl = this.options.WebSocket ?? globalThis.WebSocket;
    this.setState("connecting");
    const ws = new Impl(this.url);
    this.ws = ws;
    ws.onopen = () => {
      this.failures = 0;
      this.setState("open");
      this.pingTimer = setInterval(
        () => this.sendFrame({ event: "ping" } as Out),
        this.options.pingMs ?? 25_000,
      );
      this.resubscribe();
    };
    ws.onmessage = (event: MessageEvent) => {
      let frame: In;
      try {
        frame = JSON.parse(String(event.data)) as In;
      } catch {
        return;
      }
      this.received(frame);
      for (const handler of this.handlers) handler(frame);
    };
    ws.onclose = (event: CloseEvent) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.clearTimers();
      if (this.closed) return;
      if (FINAL_CODES.has(event.code)) {
        this.closed = true;
        this.setState("closed");
        this.options.onClose?.(event.code, event.reason);
        return;
      }
      this.setState("connecting");
      this.failures++;
      const cap = this.options.maxBackoffMs ?? 30_000;
      // 4429 = too many sockets for this user: wait the longest.
      const step =
        event.code === 4429
          ? cap
          : Math.min(cap, (this.options.backoffBaseMs ?? 500) * 2 ** (this.failures - 1));
      this.retryTimer = setTimeout(() => this.connect(), step / 2 + (Math.random() * step) / 2);
    };
  }

  private setState(state: SocketState): void {
    if (this.state === state) return;
    this.state = state;
    this.options.onState?.(state);
  }

  private clearTimers(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.retryTimer = null;
    this.pingTimer = null;
  }
}

interface PendingSend {
  room_id: string;
  body: string;
  client_msg_id: string;
  reply_to?: string;
}

export class RoomSocket extends ReconnectingSocket<RoomServerFrame, RoomClientFrame> {
  private readonly extraRooms = new Set<string>();
  private readonly pending = new Map<string, PendingSend>();

  constructor(
    url: string,
    readonly roomId: string,
    options: SocketOptions = {},
  ) {
    super(url, options);
  }

  /** Also receive another room's frames on this socket (kept across reconnects). */
  join(roomId: string): void {
    this.extraRooms.add(roomId);
    this.sendFrame({ event: "room.join", room_id: roomId });
  }

  leave(roomId: string): void {
    this.extraRooms.delete(roomId);
    this.sendFrame({ event: "room.leave", room_id: roomId });
  }

  /**
   * Send a message over the socket; queued while disconnected and re-sent after a
   * reconnect (same `client_msg_id`) until its `room.message` echo arrives.
   * Returns the `client_msg_id`.
   */
  send(
    body: string,
    roomId: string = this.roomId,
    clientMsgId = newClientMsgId(),
    replyTo?: string,
  ): string {
    const item: PendingSend = { room_id: roomId, body, client_msg_id: clientMsgId };
    if (replyTo) item.reply_to = replyTo;
    this.pending.set(clientMsgId, item);
    this.sendFrame({ event: "room.message.send", ...item });
    return clientMsgId;
  }

  /** Say whether the user is typing here (see `TypingNotifier` for the coalescing);
   *  false when the socket is not open (nothing is queued: typing is ephemeral). */
  typing(typing: boolean, roomId: string = this.roomId): boolean {
    return this.sendFrame({ event: "room.typing", room_id: roomId, typing });
  }

  protected resubscribe(): void {
    for (const room of this.extraRooms) this.sendFrame({ event: "room.join", room_id: room });
    for (const item of this.pending.values()) {
      this.sendFrame({ event: "room.message.send", ...item });
    }
  }

  protected received(frame: RoomServerFrame): void {
    if (frame.event !== "room.message") return;
    // The echo carries no client_msg_id: the oldest pending send with this body is it.
    for (const [id, item] of this.pending) {
      if (item.room_id === frame.room_id && item.body === frame.message.body) {
        this.pending.delete(id);
        break;
      }
    }
  }
}

export class PresenceSocket extends ReconnectingSocket<PresenceServerFrame, PresenceClientFrame> {
  constructor(
    url: string,
    readonly userId: string,
    options: SocketOptions = {},
  ) {
    super(url, options);
  }

  /** A heartbeat over the socket (the HTTP PresenceHeartbeat is the usual way). */
  heartbeat(status: "online" | "away", lastActiveAgo?: number, deviceId?: string): boolean {
    return this.sendFrame({
      event: "presence.heartbeat",
      user_id: this.userId,
      status,
      last_active_ago: lastActiveAgo,
      device_id: deviceId,
    });
  }

  protected resubscribe(): void {}
}
