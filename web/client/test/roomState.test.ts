import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import {
  TYPING_TIMEOUT_MS,
  TypingNotifier,
  activeTypists,
  applyMemberFrame,
  applyReaction,
  applyTyping,
  membersFromApi,
  messagesReducer,
  snippet,
  stopTyping,
  typingText,
  withSelf,
  type RoomMember,
} from "../src/roomState.js";
import type { Message, RoomReactionFrame } from "../src/types.js";

const ME = "u_me";
const ROOM = "room_city_general";

function msg(id: string, extra: Partial<Message> = {}): Message {
  return {
    id,
    room_id: ROOM,
    author_user_id: "u_other",
    author_agent_id: null,
    author_matrix_id: null,
    body: `body of ${id}`,
    created_at: "2024-01-01T00:00:00Z",
    reply_to: null,
    attachment: null,
    edited_at: null,
    reactions: [],
    ...extra,
  };
}

function reaction(extra: Partial<RoomReactionFrame> & { key: string; count: number; added: boolean }): RoomReactionFrame {
  return { event: "room.reaction", room_id: ROOM, message_id: "m1", user_id: "u_other", ...extra } as RoomReactionFrame;
}

describe("messagesReducer", () => {
  it("adds pages and live messages without duplicates, in order", () => {
    let s = messagesReducer([], { type: "added", messages: [msg("m2"), msg("m3")], where: "newer" });
    s = messagesReducer(s, { type: "added", messages: [msg("m3"), msg("m4")], where: "newer" });
    s = messagesReducer(s, { type: "added", messages: [msg("m1"), msg("m2")], where: "older" });
    expect(s.map((m) => m.id)).toEqual(["m1", "m2", "m3", "m4"]);
  });

  it("keeps the same array when nothing changes", () => {
    const s = [msg("m1")];
    expect(messagesReducer(s, { type: "deleted", messageId: "nope" })).toBe(s);
    expect(messagesReducer(s, { type: "added", messages: [], where: "newer" })).toBe(s);
    expect(messagesReducer(s, { type: "reaction", frame: reaction({ message_id: "x", key: "👍", count: 1, added: true }), me: ME })).toBe(s);
  });

  it("applies an edit frame keeping our `me` (frames say false)", () => {
    const before = [msg("m1", { reactions: [{ key: "👍", count: 2, me: true }] })];
    const edited = msg("m1", {
      body: "new body",
      edited_at: "2024-01-01T00:01:00Z",
      reactions: [{ key: "👍", count: 2, me: false }],
    });
    const s = messagesReducer(before, { type: "edited", message: edited });
    expect(s[0]!.body).toBe("new body");
    expect(s[0]!.edited_at).toBe("2024-01-01T00:01:00Z");
    expect(s[0]!.reactions).toEqual([{ key: "👍", count: 2, me: true }]);
  });

  it("trusts `me` from a REST answer", () => {
    const before = [msg("m1", { reactions: [{ key: "👍", count: 2, me: true }] })];
    const after = msg("m1", { reactions: [{ key: "👍", count: 1, me: false }] });
    expect(messagesReducer(before, { type: "replaced", message: after })[0]!.reactions).toEqual([
      { key: "👍", count: 1, me: false },
    ]);
    expect(messagesReducer(before, { type: "edited", message: after, trustMe: true })[0]!.reactions[0]!.me).toBe(false);
  });

  it("ignores an edit of a message it does not have", () => {
    const s = [msg("m1")];
    expect(messagesReducer(s, { type: "edited", message: msg("m9") })).toBe(s);
  });

  it("deletes", () => {
    const s = messagesReducer([msg("m1"), msg("m2")], { type: "deleted", messageId: "m1" });
    expect(s.map((m) => m.id)).toEqual(["m2"]);
  });

  it("applies reaction frames to the right message", () => {
    let s = [msg("m1"), msg("m2")];
    s = messagesReducer(s, { type: "reaction", frame: reaction({ key: "🎉", count: 1, added: true, user_id: ME }), me: ME });
    expect(s[0]!.reactions).toEqual([{ key: "🎉", count: 1, me: true }]);
    expect(s[1]!.reactions).toEqual([]);
  });

  it("resets", () => {
    expect(messagesReducer([msg("m1")], { type: "reset" })).toEqual([]);
  });
});

describe("applyReaction", () => {
  it("counts others without marking me", () => {
    const r = applyReaction([], { key: "👍", count: 1, added: true, user_id: "u_other" }, ME);
    expect(r).toEqual([{ key: "👍", count: 1, me: false }]);
  });

  it("marks and unmarks my own", () => {
    let r = applyReaction([{ key: "👍", count: 1, me: false }], { key: "👍", count: 2, added: true, user_id: ME }, ME);
    expect(r).toEqual([{ key: "👍", count: 2, me: true }]);
    r = applyReaction(r, { key: "👍", count: 1, added: false, user_id: ME }, ME);
    expect(r).toEqual([{ key: "👍", count: 1, me: false }]);
  });

  it("keeps my mark when someone else changes the count", () => {
    const r = applyReaction([{ key: "👍", count: 2, me: true }], { key: "👍", count: 1, added: false, user_id: "u_x" }, ME);
    expect(r).toEqual([{ key: "👍", count: 1, me: true }]);
  });

  it("a Matrix user's reaction is never mine, and count 0 removes the key", () => {
    let r = applyReaction([], { key: "❤️", count: 1, added: true } as never, ME);
    expect(r).toEqual([{ key: "❤️", count: 1, me: false }]);
    r = applyReaction([{ key: "👍", count: 1, me: false }, ...r], { key: "👍", count: 0, added: false, user_id: "u_x" }, ME);
    expect(r).toEqual([{ key: "❤️", count: 1, me: false }]);
  });

  it("keeps keys in first-used order", () => {
    let r = applyReaction([], { key: "a", count: 1, added: true, user_id: "u_x" }, ME);
    r = applyReaction(r, { key: "b", count: 1, added: true, user_id: "u_x" }, ME);
    r = applyReaction(r, { key: "a", count: 2, added: true, user_id: "u_y" }, ME);
    expect(r.map((x) => x.key)).toEqual(["a", "b"]);
  });
});

describe("typing", () => {
  it("tracks others, ignores me, times out", () => {
    let t = applyTyping({}, { typing: true, user_id: "u_a" }, 1000, ME);
    t = applyTyping(t, { typing: true, matrix_user_id: "@el:hs" } as never, 2000, ME);
    t = applyTyping(t, { typing: true, user_id: ME }, 2000, ME);
    expect(activeTypists(t, 2000)).toEqual(["u_a", "@el:hs"]);
    expect(activeTypists(t, 1000 + TYPING_TIMEOUT_MS)).toEqual(["@el:hs"]);
    expect(activeTypists(t, 2000 + TYPING_TIMEOUT_MS)).toEqual([]);
  });

  it("a refresh extends, false or a message ends", () => {
    let t = applyTyping({}, { typing: true, user_id: "u_a" }, 0, ME);
    t = applyTyping(t, { typing: true, user_id: "u_a" }, 20_000, ME);
    expect(activeTypists(t, TYPING_TIMEOUT_MS + 1)).toEqual(["u_a"]);
    expect(activeTypists(applyTyping(t, { typing: false, user_id: "u_a" }, 21_000, ME), 21_000)).toEqual([]);
    expect(activeTypists(stopTyping(t, "u_a"), 21_000)).toEqual([]);
    expect(stopTyping(t, "u_nobody")).toBe(t);
    expect(applyTyping(t, { typing: false, user_id: "u_b" }, 0, ME)).toBe(t);
  });

  it("says who types", () => {
    expect(typingText([])).toBe("");
    expect(typingText(["Ann"])).toBe("Ann is typing…");
    expect(typingText(["Ann", "Bo"])).toBe("Ann and Bo are typing…");
    expect(typingText(["Ann", "Bo", "Cy"])).toBe("Ann, Bo and Cy are typing…");
    expect(typingText(["Ann", "Bo", "Cy", "Di"])).toBe("Ann, Bo and 2 others are typing…");
  });
});

describe("TypingNotifier", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("sends true once on input, false after 5 s idle", () => {
    const sent: boolean[] = [];
    const n = new TypingNotifier((t) => sent.push(t));
    n.input();
    n.input();
    vi.advanceTimersByTime(4_000);
    n.input();
    expect(sent).toEqual([true]);
    vi.advanceTimersByTime(4_999);
    expect(sent).toEqual([true]);
    vi.advanceTimersByTime(1);
    expect(sent).toEqual([true, false]);
    expect(n.isTyping).toBe(false);
  });

  it("refreshes true every 10 s while input continues", () => {
    const sent: boolean[] = [];
    const n = new TypingNotifier((t) => sent.push(t));
    for (let i = 0; i < 25; i++) {
      n.input();
      vi.advanceTimersByTime(1_000);
    }
    expect(sent).toEqual([true, true, true]); // at 0, 10 and 20 s
  });

  it("stop (send, blur) sends false once and clears the idle timer", () => {
    const sent: boolean[] = [];
    const n = new TypingNotifier((t) => sent.push(t));
    n.stop();
    expect(sent).toEqual([]);
    n.input();
    n.stop();
    n.stop();
    vi.advanceTimersByTime(10_000);
    expect(sent).toEqual([true, false]);
    expect(vi.getTimerCount()).toBe(0);
    n.input();
    n.dispose();
    expect(sent).toEqual([true, false, true, false]);
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe("members", () => {
  const api = membersFromApi([
    { user_id: "u_b", display_name: "Bea", status: "away" },
    { matrix_user_id: "@el:hs", display_name: "Element", status: "offline" },
    { user_id: "u_a", display_name: null, status: "online" },
  ]);

  it("come from the API, online first", () => {
    expect(api.map((m) => [m.id, m.kind, m.status])).toEqual([
      ["u_a", "city", "online"],
      ["u_b", "city", "away"],
      ["@el:hs", "matrix", "offline"],
    ]);
  });

  it("join adds a city user once, leave removes them", () => {
    let m: RoomMember[] = applyMemberFrame(api, { event: "room.join", user_id: "u_c" });
    expect(m.find((x) => x.id === "u_c")?.status).toBe("online");
    expect(applyMemberFrame(m, { event: "room.join", user_id: "u_c" })).toBe(m);
    m = applyMemberFrame(m, { event: "room.leave", user_id: "u_c" });
    expect(m.some((x) => x.id === "u_c")).toBe(false);
    // A Matrix user with the same id string is not a city user leaving.
    expect(applyMemberFrame(m, { event: "room.leave", user_id: "@el:hs" })).toBe(m);
  });

  it("presence frames update city and Matrix users and re-sort", () => {
    let m = applyMemberFrame(api, { event: "room.presence", matrix_user_id: "@el:hs", status: "online" });
    expect(m[0]).toMatchObject({ id: "@el:hs", status: "online", displayName: "Element" });
    m = applyMemberFrame(m, { event: "room.presence", user_id: "u_a", status: "away" });
    expect(m.find((x) => x.id === "u_a")?.status).toBe("away");
    m = applyMemberFrame(m, { event: "room.presence", matrix_user_id: "@new:hs", status: "unavailable" });
    expect(m.find((x) => x.id === "@new:hs")).toMatchObject({ kind: "matrix", status: "unavailable" });
    expect(applyMemberFrame(m, { event: "room.presence", user_id: "u_a", status: "away" })).toBe(m);
  });
});

describe("snippet", () => {
  it("is one line and short", () => {
    expect(snippet("a\n\nb   c")).toBe("a b c");
    expect(snippet("x".repeat(100), 10)).toBe(`${"x".repeat(9)}…`);
  });
});

describe("withSelf", () => {
  it("adds this user once, online", () => {
    const m = withSelf([], { id: ME, displayName: "Me" });
    expect(m).toEqual([{ id: ME, kind: "city", displayName: "Me", status: "online" }]);
    expect(withSelf(m, { id: ME, displayName: "Me" })).toBe(m);
  });
});
