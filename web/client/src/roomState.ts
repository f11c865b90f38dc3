/**
 * A room's client-side state as pure functions (no React, no timers except in
 * `TypingNotifier`), so that every rule is unit-tested (test/roomState.test.ts) and any
 * framework can use them. `useCityRoom` is the React glue.
 *
 * - messages: pages and live frames merged without duplicates, edits, deletes and
 *   reactions applied (SPEC §13); `me` on reactions is kept from the REST answers,
 *   since frames carry no `me` (the actor's `user_id` says whether it was us).
 * - typing: who is typing, each entry timing out on its own (a lost `false` must not
 *   leave someone "typing" forever).
 * - members: `GET /city/rooms/{id}/members` plus `room.join` / `room.leave` /
 *   `room.presence` frames, city and Matrix users alike.
 */

import type {
  Message,
  Reaction,
  RoomMemberOut,
  RoomPresenceFrame,
  RoomReactionFrame,
  RoomTypingFrame,
} from "./types.js";

// --- messages ---------------------------------------------------------------------------

export type MessagesAction =
  | { type: "reset" }
  /** A page or live messages; ones already there are replaced by the newer copy. */
  | { type: "added"; messages: readonly Message[]; where: "older" | "newer" }
  /** `room.message_edited` (frame: `me` not trusted) or a PATCH answer (trusted). */
  | { type: "edited"; message: Message; trustMe?: boolean }
  | { type: "deleted"; messageId: string }
  /** `room.reaction`; `me` = this client's user, to tell our own reactions. */
  | { type: "reaction"; frame: RoomReactionFrame; me: string }
  /** A PUT/DELETE reaction answer: the message as the server has it, `me` included. */
  | { type: "replaced"; message: Message };

export function messagesReducer(state: readonly Message[], action: MessagesAction): Message[] {
  switch (action.type) {
    case "reset":
      return state.length === 0 ? (state as Message[]) : [];
    case "added": {
      const byId = new Map(action.messages.map((m) => [m.id, m]));
      let changed = false;
      const kept = state.map((m) => {
        const fresh = byId.get(m.id);
        if (!fresh) return m;
        byId.delete(m.id);
        changed = true;
        return { ...fresh, reactions: keepMe(m.reactions, fresh.reactions) };
      });
      const extra = action.messages.filter((m) => byId.has(m.id) && byId.delete(m.id));
      if (extra.length === 0) return changed ? kept : (state as Message[]);
      return action.where === "older" ? [...extra, ...kept] : [...kept, ...extra];
    }
    case "edited":
    case "replaced": {
      const trust = action.type === "replaced" || action.trustMe === true;
      let found = false;
      const next = state.map((m) => {
        if (m.id !== action.message.id) return m;
        found = true;
        const reactions = trust ? action.message.reactions : keepMe(m.reactions, action.message.reactions);
        return { ...action.message, reactions };
      });
      return found ? next : (state as Message[]);
    }
    case "deleted": {
      const next = state.filter((m) => m.id !== action.messageId);
      return next.length === state.length ? (state as Message[]) : next;
    }
    case "reaction": {
      const { frame } = action;
      let found = false;
      const next = state.map((m) => {
        if (m.id !== frame.message_id) return m;
        found = true;
        return { ...m, reactions: applyReaction(m.reactions ?? [], frame, action.me) };
      });
      return found ? next : (state as Message[]);
    }
  }
}

/** The reactions after a `room.reaction` frame: `count` is the key's count after the
 *  change (0 removes the key); `me` changes only when the actor is this user. */
export function applyReaction(
  reactions: readonly Reaction[],
  frame: Pick<RoomReactionFrame, "key" | "count" | "added" | "user_id">,
  me: string,
): Reaction[] {
  const mine = frame.user_id !== undefined && frame.user_id === me;
  const index = reactions.findIndex((r) => r.key === frame.key);
  if (frame.count <= 0) return reactions.filter((r) => r.key !== frame.key);
  if (index < 0) return [...reactions, { key: frame.key, count: frame.count, me: mine && frame.added }];
  return reactions.map((r, i) =>
    i === index ? { key: r.key, count: frame.count, me: mine ? frame.added : r.me } : r,
  );
}

/** Socket frames say `me: false`: keep what we knew per key. */
function keepMe(before: readonly Reaction[] | undefined, after: readonly Reaction[] | undefined): Reaction[] {
  const known = new Map((before ?? []).map((r) => [r.key, r.me]));
  return (after ?? []).map((r) => ({ ...r, me: r.me || (known.get(r.key) ?? false) }));
}

/** The start of a message for a reply preview, on one line. */
export function snippet(body: string, max = 80): string {
  const line = body.replace(/\s+/g, " ").trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

/** Who wrote a message: city user, agent or Matrix user id. */
export function authorOf(message: Message): string {
  return message.author_user_id ?? message.author_agent_id ?? message.author_matrix_id ?? "?";
}

// --- typing ----------------------------------------------------------------------------

/** Someone's typing without a refresh for this long is over (the gateway refreshes a
 *  city user's `true` every 15 s and ends it after 30 s; Matrix's timeout is 30 s). */
export const TYPING_TIMEOUT_MS = 35_000;

/** Who is typing: actor key (`user_id` or `matrix_user_id`) → expiry (ms since epoch). */
export type TypingState = Readonly<Record<string, number>>;

export function typingKey(actor: { user_id?: string | null; matrix_user_id?: string | null }): string | null {
  return actor.user_id ?? actor.matrix_user_id ?? null;
}

export function applyTyping(
  state: TypingState,
  frame: Pick<RoomTypingFrame, "typing" | "user_id" | "matrix_user_id">,
  now: number,
  me: string,
  timeoutMs = TYPING_TIMEOUT_MS,
): TypingState {
  const key = typingKey(frame);
  if (key === null || key === me) return state;
  if (frame.typing) return { ...state, [key]: now + timeoutMs };
  if (!(key in state)) return state;
  const { [key]: _gone, ...rest } = state;
  return rest;
}

/** A message from someone ends their typing (their `false` may come later or never). */
export function stopTyping(state: TypingState, key: string | null): TypingState {
  if (key === null || !(key in state)) return state;
  const { [key]: _gone, ...rest } = state;
  return rest;
}

/** The typists still typing at `now`, in the order they started. */
export function activeTypists(state: TypingState, now: number): string[] {
  return Object.entries(state)
    .filter(([, until]) => until > now)
    .map(([key]) => key);
}

/** "Alice is typing…", "Alice and Bob are typing…", "Alice, Bob and 2 others are typing…". */
export function typingText(names: readonly string[]): string {
  if (names.length === 0) return "";
  if (names.length === 1) return `${names[0]} is typing…`;
  if (names.length === 2) return `${names[0]} and ${names[1]} are typing…`;
  if (names.length === 3) return `${names[0]}, ${names[1]} and ${names[2]} are typing…`;
  return `${names[0]}, ${names[1]} and ${names.length - 2} others are typing…`;
}

/**
 * Sends this user's typing, coalesced: `true` on the first input (again every
 * `refreshMs` while input continues, so the gateway's 30 s timeout does not end it),
 * `false` after `idleMs` without input, on `stop()` (message sent, composer blurred)
 * and on `dispose()`. Never two equal states in a row except those refreshes.
 */
export class TypingNotifier {
  private typing = false;
  private lastTrueAt = 0;
  private idleTimer: ReturnType<typeof setTimeout> | null = null;
  private readonly idleMs: number;
  private readonly refreshMs: number;

  constructor(
    private readonly send: (typing: boolean) => void,
    options: { idleMs?: number; refreshMs?: number } = {},
  ) {
    this.idleMs = options.idleMs ?? 5_000;
    this.refreshMs = options.refreshMs ?? 10_000;
  }

  get isTyping(): boolean {
    return this.typing;
  }

  /** The user typed (call on every input event; an empty composer is `stop()`). */
  input(): void {
    const now = Date.now();
    if (!this.typing || now - this.lastTrueAt >= this.refreshMs) {
      this.typing = true;
      this.lastTrueAt = now;
      this.send(true);
    }
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => this.stop(), this.idleMs);
  }

  /** Not typing any more: sent, blurred, emptied, idle. */
  stop(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
    if (!this.typing) return;
    this.typing = false;
    this.send(false);
  }

  dispose(): void {
    this.stop();
  }
}

// --- members ---------------------------------------------------------------------------

export type MemberStatus = "online" | "away" | "unavailable" | "offline";

export interface RoomMember {
  /** A city user (`u_…`) or a Matrix user's id (`@alice:example.org`). */
  id: string;
  kind: "city" | "matrix";
  displayName: string | null;
  /** City: online | away (from the API and frames); Matrix: online | unavailable | offline. */
  status: MemberStatus | null;
}

export function membersFromApi(members: readonly RoomMemberOut[]): RoomMember[] {
  const out: RoomMember[] = [];
  for (const m of members) {
    const id = m.user_id ?? m.matrix_user_id;
    if (!id) continue;
    out.push({ id, kind: m.user_id ? "city" : "matrix", displayName: m.display_name, status: m.status });
  }
  return sortMembers(out);
}

export type MemberFrame =
  | { event: "room.join"; user_id: string }
  | { event: "room.leave"; user_id: string }
  | Pick<RoomPresenceFrame, "event" | "user_id" | "matrix_user_id" | "status">;

/** Live updates: city users join and leave (the list is of those connected now);
 *  presence frames update city and Matrix users (adding a Matrix user not yet listed). */
export function applyMemberFrame(members: readonly RoomMember[], frame: MemberFrame): RoomMember[] {
  if (frame.event === "room.join") {
    if (members.some((m) => m.kind === "city" && m.id === frame.user_id)) return members as RoomMember[];
    return sortMembers([...members, { id: frame.user_id, kind: "city", displayName: null, status: "online" }]);
  }
  if (frame.event === "room.leave") {
    const next = members.filter((m) => !(m.kind === "city" && m.id === frame.user_id));
    return next.length === members.length ? (members as RoomMember[]) : next;
  }
  const kind = frame.user_id ? "city" : "matrix";
  const id = frame.user_id ?? frame.matrix_user_id;
  if (!id) return members as RoomMember[];
  const index = members.findIndex((m) => m.kind === kind && m.id === id);
  if (index < 0) {
    // A city user's presence without a join: they are in the room on another socket.
    return sortMembers([...members, { id, kind, displayName: null, status: frame.status }]);
  }
  if (members[index]!.status === frame.status) return members as RoomMember[];
  return sortMembers(members.map((m, i) => (i === index ? { ...m, status: frame.status } : m)));
}

/** This user, connected to the room: always a member, whatever a list fetched a
 *  moment before their socket joined says. */
export function withSelf(members: readonly RoomMember[], self: { id: string; displayName: string | null }): RoomMember[] {
  if (members.some((m) => m.kind === "city" && m.id === self.id)) return members as RoomMember[];
  return sortMembers([...members, { id: self.id, kind: "city", displayName: self.displayName, status: "online" }]);
}

const RANK: Record<string, number> = { online: 0, away: 1, unavailable: 1, offline: 2 };

/** Online first, then away/unavailable, then offline; by name within each. */
export function sortMembers(members: RoomMember[]): RoomMember[] {
  return [...members].sort(
    (a, b) =>
      (RANK[a.status ?? "offline"] ?? 3) - (RANK[b.status ?? "offline"] ?? 3) ||
      memberName(a).localeCompare(memberName(b)),
  );
}

export function memberName(member: Pick<RoomMember, "id" | "displayName">): string {
  return member.displayName || member.id;
}

/** Matrix `unavailable` is shown as the city's `away`. */
export function statusLabel(status: MemberStatus | null): string {
  if (status === null) return "…";
  return status === "unavailable" ? "away" : status;
}
