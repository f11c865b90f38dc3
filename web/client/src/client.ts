/**
 * CityClient: the gateway's REST API, typed from its OpenAPI document, plus factories
 * for the two sockets. One instance per signed-in user:
 *
 *     const city = new CityClient({ token });
 *     const rooms = await city.listRooms();
 *     await city.postMessage(rooms[0].id, "hello");
 */

import { CityApiError } from "./errors.js";
import { PresenceSocket, RoomSocket, type SocketOptions } from "./sockets.js";
import { userIdFromToken } from "./token.js";
import type {
  CreateRoomBody,
  FeedEvent,
  Message,
  PresenceList,
  Room,
  RoomMembers,
  RoomPage,
  SecondMeAnswer,
  SecondMeHistoryItem,
  Stats,
} from "./types.js";
import { newClientMsgId } from "./ids.js";

export interface CityClientOptions {
  token: string;
  /** Gateway origin, e.g. `https://city.example`; "" (default) = this page's origin. */
  baseUrl?: string;
  fetch?: typeof fetch;
  /** Attempts for a message POST that fails on the network or with 5xx (default 3). */
  sendAttempts?: number;
}

export class CityClient {
  readonly token: string;
  readonly userId: string;
  readonly baseUrl: string;
  private readonly fetchImpl: typeof fetch;
  private readonly sendAttempts: number;

  constructor(options: CityClientOptions) {
    this.token = options.token;
    this.userId = userIdFromToken(options.token);
    this.baseUrl = (options.baseUrl ?? "").replace(/\/$/, "");
    const f = options.fetch ?? ((...args: Parameters<typeof fetch>) => globalThis.fetch(...args));
    this.fetchImpl = f;
    this.sendAttempts = options.sendAttempts ?? 3;
  }

  // --- rooms ---------------------------------------------------------------------------

  listRooms(params: { limit?: number; offset?: number } = {}): Promise<Room[]> {
    return this.get("/city/rooms", params);
  }

  createRoom(body: CreateRoomBody): Promise<Room> {
    return this.request("POST", "/city/rooms", { body });
  }

  /** The room and its latest 50 messages, oldest first. */
  getRoom(roomId: string): Promise<RoomPage> {
    return this.get(`/city/rooms/${encodeURIComponent(roomId)}`);
  }

  /** The page of messages before `before` (a message id), oldest first. */
  listMessages(roomId: string, params: { before?: string; limit?: number } = {}): Promise<Message[]> {
    return this.get(`/city/rooms/${encodeURIComponent(roomId)}/messages`, params);
  }

  /**
   * Post as the token's user. A `client_msg_id` is made when none is given and kept
   * across retries (network errors and 5xx), so a retry never posts twice: the gateway
   * answers a known id with the first message.
   */
  async postMessage(
    roomId: string,
    body: string,
    options: { clientMsgId?: string; replyTo?: string | null } = {},
  ): Promise<Message> {
    const client_msg_id = options.clientMsgId ?? newClientMsgId();
    const path = `/city/rooms/${encodeURIComponent(roomId)}/messages`;
    const payload: Record<string, string> = { body, client_msg_id };
    if (options.replyTo) payload.reply_to = options.replyTo;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.request<Message>("POST", path, { body: payload });
      } catch (error) {
        const retry =
          error instanceof CityApiError &&
          error.retryable &&
          error.status !== 429 &&
          attempt < this.sendAttempts;
        if (!retry) throw error;
        await delay(300 * 2 ** (attempt - 1) * (0.5 + Math.random() / 2));
      }
    }
  }

  /** Replace the body of your own message (403 `forbidden` for anyone else's). */
  editMessage(roomId: string, messageId: string, body: string): Promise<Message> {
    return this.request("PATCH", messagePath(roomId, messageId), { body: { body } });
  }

  /** Delete your own message (403 `forbidden` for anyone else's). */
  async deleteMessage(roomId: string, messageId: string): Promise<void> {
    await this.request("DELETE", messagePath(roomId, messageId));
  }

  /** React with `key` (idempotent); the message with its reactions after. */
  react(roomId: string, messageId: string, key: string): Promise<Message> {
    return this.request("PUT", reactionPath(roomId, messageId, key));
  }

  /** Take back your reaction `key` (idempotent); the message with its reactions after. */
  unreact(roomId: string, messageId: string, key: string): Promise<Message> {
    return this.request("DELETE", reactionPath(roomId, messageId, key));
  }

  /** City users connected to the room now and the Matrix room's joined real users. */
  members(roomId: string): Promise<RoomMembers> {
    return this.get(`/city/rooms/${encodeURIComponent(roomId)}/members`);
  }

  /** An absolute URL for a path the gateway returned (e.g. `attachment.url`). */
  resolveUrl(path: string): string {
    if (/^[a-z][a-z0-9+.-]*:/i.test(path)) return path;
    return `${this.baseUrl}${path.startsWith("/") ? "" : "/"}${path}`;
  }

  // --- city ----------------------------------------------------------------------------

  /** Newest first; pass the last event's id as `before` for the next page. */
  feed(params: { limit?: number; before?: string } = {}): Promise<FeedEvent[]> {
    return this.get("/city/feed", params);
  }

  stats(): Promise<Stats> {
    return this.get("/city/stats");
  }

  /** Users' presence, in the order asked; unknown users are `offline`. */
  presence(userIds: readonly string[]): Promise<PresenceList> {
    if (userIds.length === 0) return Promise.resolve({ users: [] });
    return this.get("/city/presence", { user_id: userIds });
  }

  // --- Second Me -----------------------------------------------------------------------

  /** Errors: 429 rate_limited, 502 agent_unavailable, 504 agent_timeout, 503. */
  askSecondMe(prompt: string): Promise<SecondMeAnswer> {
    return this.request("POST", "/secondme/invoke", { body: { prompt } });
  }

  secondMeHistory(limit = 20): Promise<SecondMeHistoryItem[]> {
    return this.get("/secondme/history", { limit });
  }

  // --- sockets -------------------------------------------------------------------------

  roomSocket(roomId: string, options: SocketOptions = {}): RoomSocket {
    return new RoomSocket(this.socketUrl(`/ws/city/rooms/${encodeURIComponent(roomId)}`), roomId, options);
  }

  presenceSocket(options: SocketOptions = {}): PresenceSocket {
    return new PresenceSocket(this.socketUrl("/ws/city/presence"), this.userId, options);
  }

  /** ws(s)://… for a path, the token as `?token=` (browsers cannot set socket headers). */
  socketUrl(path: string): string {
    const origin =
      this.baseUrl || (typeof location !== "undefined" ? location.origin : "http://127.0.0.1");
    const url = new URL(path, origin);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("token", this.token);
    return url.toString();
  }

  // --- plumbing ------------------------------------------------------------------------

  private get<T>(path: string, query: Record<string, unknown> = {}): Promise<T> {
    return this.request("GET", path, { query });
  }

  private async request<T>(
    method: string,
    path: string,
    init: { query?: Record<string, unknown>; body?: unknown } = {},
  ): Promise<T> {
    const search = new URLSearchParams();
    for (const [name, value] of Object.entries(init.query ?? {})) {
      if (value === undefined || value === null) continue;
      for (const v of Array.isArray(value) ? value : [value]) search.append(name, String(v));
    }
    const qs = search.toString();
    const headers: Record<string, string> = { Authorization: `Bearer ${this.token}` };
    if (init.body !== undefined) headers["Content-Type"] = "application/json";
    let response: Response;
    try {
      response = await this.fetchImpl(`${this.baseUrl}${path}${qs ? `?${qs}` : ""}`, {
        method,
        headers,
        body: init.body === undefined ? undefined : JSON.stringify(init.body),
      });
    } catch (error) {
      throw new CityApiError(0, "network_error", `could not reach the city: ${String(error)}`);
    }
    if (!response.ok) throw await CityApiError.from(response);
    if (response.status === 204) return undefined as T;
    return (await response.json()) as T;
  }
}

function messagePath(roomId: string, messageId: string): string {
  return `/city/rooms/${encodeURIComponent(roomId)}/messages/${encodeURIComponent(messageId)}`;
}

function reactionPath(roomId: string, messageId: string, key: string): string {
  return `${messagePath(roomId, messageId)}/reactions/${encodeURIComponent(key)}`;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
