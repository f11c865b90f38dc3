import { useCallback, useEffect, useMemo, useReducer, useRef, useState } from "react";
import type { CityClient } from "../client.js";
import { CityApiError } from "../errors.js";
import {
  TypingNotifier,
  activeTypists,
  applyMemberFrame,
  applyTyping,
  membersFromApi,
  messagesReducer,
  stopTyping,
  typingKey,
  withSelf,
  type RoomMember,
  type TypingState,
} from "../roomState.js";
import type { RoomSocket, SocketState } from "../sockets.js";
import { tokenClaims } from "../token.js";
import type { Message, Room } from "../types.js";

export type { RoomMember };

export interface CityRoomState {
  room: Room | null;
  /** Oldest first, without duplicates; edits, deletes and reactions applied live. */
  messages: Message[];
  /** City users connected now and the Matrix room's users, with presence (SPEC §13). */
  members: RoomMember[];
  /** Ids (`user_id` or `matrix_user_id`) of the others typing now. */
  typing: string[];
  membersOnline: number;
  connection: SocketState;
  loading: boolean;
  hasOlder: boolean;
  error: CityApiError | null;
  loadOlder: () => Promise<void>;
  /** Post a message, optionally as a reply to a message id of this room. */
  send: (body: string, options?: { replyTo?: string | null }) => Promise<void>;
  edit: (messageId: string, body: string) => Promise<void>;
  remove: (messageId: string) => Promise<void>;
  /** Add or take back this user's reaction `key` (by the message's current `me`). */
  toggleReaction: (messageId: string, key: string) => Promise<void>;
  /** Call on every composer input; `stopTyping` on send, blur or an emptied composer. */
  typingInput: () => void;
  stopTyping: () => void;
}

const PAGE = 50;
const MEMBERS_REFRESH_MS = 60_000;

/**
 * One room, live: the latest page, older pages on demand (`before=`), messages, edits,
 * deletes, reactions and typing from the room socket (reconnecting), and the members
 * (`GET /city/rooms/{id}/members`, refreshed on every (re)connect and every minute,
 * updated by `room.join` / `room.leave` / `room.presence` frames in between).
 * The state rules are the pure functions of `roomState.ts`.
 */
export function useCityRoom(client: CityClient, roomId: string): CityRoomState {
  const [room, setRoom] = useState<Room | null>(null);
  const [messages, dispatch] = useReducer(messagesReducer, []);
  const [members, setMembers] = useState<RoomMember[]>([]);
  const [typingState, setTypingState] = useState<TypingState>({});
  const [now, setNow] = useState(() => Date.now());
  const [membersOnline, setMembersOnline] = useState(0);
  const [connection, setConnection] = useState<SocketState>("connecting");
  const [loading, setLoading] = useState(true);
  const [hasOlder, setHasOlder] = useState(false);
  const [error, setError] = useState<CityApiError | null>(null);
  const socketRef = useRef<RoomSocket | null>(null);
  const notifierRef = useRef<TypingNotifier | null>(null);
  const messagesRef = useRef<Message[]>([]);
  messagesRef.current = messages;

  useEffect(() => {
    let cancelled = false;
    dispatch({ type: "reset" });
    setMembers([]);
    setTypingState({});
    setLoading(true);
    setError(null);
    client
      .getRoom(roomId)
      .then((page) => {
        if (cancelled) return;
        setRoom(page.room);
        setMembersOnline(page.members_online);
        dispatch({ type: "added", messages: page.messages, where: "newer" });
        setHasOlder(page.messages.length >= PAGE);
      })
      .catch((e: unknown) => !cancelled && setError(asApiError(e)))
      .finally(() => !cancelled && setLoading(false));

    // While our socket is open we are a member, even if the list was read a moment
    // before the gateway registered the join.
    const self = { id: client.userId, displayName: tokenClaims(client.token).name ?? null };
    let open = false;
    const refreshMembers = () =>
      client
        .members(roomId)
        .then((answer) => {
          if (cancelled) return;
          const listed = membersFromApi(answer.members);
          setMembers(open ? withSelf(listed, self) : listed);
        })
        .catch(() => undefined); // the frames keep it roughly right until the next try
    const membersTimer = setInterval(refreshMembers, MEMBERS_REFRESH_MS);
    // A join frame has no display name: read the list again shortly (once per burst).
    let joinTimer: ReturnType<typeof setTimeout> | null = null;
    const refreshSoon = () => {
      if (joinTimer === null) {
        joinTimer = setTimeout(() => {
          joinTimer = null;
          void refreshMembers();
        }, 500);
      }
    };

    const socket = client.roomSocket(roomId, {
      onState: (s) => {
        if (cancelled) return;
        setConnection(s);
        open = s === "open";
        // (Re)connected: we are a member now, and frames may have been missed.
        if (open) {
          setMembers((m) => withSelf(m, self));
          void refreshMembers();
        }
      },
      onClose: (code, reason) => {
        if (!cancelled && code !== 1000) setError(new CityApiError(code, "socket_closed", reason));
      },
    });
    socketRef.current = socket;
    const notifier = new TypingNotifier((typing) => socket.typing(typing));
    notifierRef.current = notifier;
    const off = socket.on((frame) => {
      if (cancelled || ("room_id" in frame && frame.room_id !== roomId)) return;
      switch (frame.event) {
        case "room.message":
          dispatch({ type: "added", messages: [frame.message], where: "newer" });
          setTypingState((t) =>
            stopTyping(t, typingKey({ user_id: frame.message.author_user_id, matrix_user_id: frame.message.author_matrix_id })),
          );
          break;
        case "room.message_edited":
          dispatch({ type: "edited", message: frame.message });
          break;
        case "room.message_deleted":
          dispatch({ type: "deleted", messageId: frame.message_id });
          break;
        case "room.reaction":
          dispatch({ type: "reaction", frame, me: client.userId });
          break;
        case "room.typing":
          setTypingState((t) => applyTyping(t, frame, Date.now(), client.userId));
          setNow(Date.now());
          break;
        case "room.join":
          setMembers((m) => applyMemberFrame(m, frame));
          refreshSoon();
          setMembersOnline((n) => n + 1);
          break;
        case "room.leave":
          setMembers((m) => applyMemberFrame(m, frame));
          setTypingState((t) => stopTyping(t, frame.user_id));
          setMembersOnline((n) => Math.max(0, n - 1));
          break;
        case "room.presence":
          setMembers((m) => applyMemberFrame(m, frame));
          break;
        default:
          break;
      }
    });
    return () => {
      cancelled = true;
      clearInterval(membersTimer);
      if (joinTimer !== null) clearTimeout(joinTimer);
      off();
      notifier.dispose();
      socket.close();
      socketRef.current = null;
      notifierRef.current = null;
    };
  }, [client, roomId]);

  // Typing entries time out on their own: re-render when the next one expires.
  useEffect(() => {
    const expiries = Object.values(typingState).filter((t) => t > now);
    if (expiries.length === 0) return undefined;
    const timer = setTimeout(() => setNow(Date.now()), Math.min(...expiries) - now + 50);
    return () => clearTimeout(timer);
  }, [typingState, now]);

  const loadOlder = useCallback(async () => {
    const oldest = messagesRef.current[0];
    if (!oldest) return;
    try {
      const page = await client.listMessages(roomId, { before: oldest.id, limit: PAGE });
      dispatch({ type: "added", messages: page, where: "older" });
      setHasOlder(page.length >= PAGE);
    } catch (e) {
      setError(asApiError(e));
    }
  }, [client, roomId]);

  const send = useCallback(
    async (body: string, options: { replyTo?: string | null } = {}) => {
      notifierRef.current?.stop();
      const message = await client.postMessage(roomId, body, { replyTo: options.replyTo });
      dispatch({ type: "added", messages: [message], where: "newer" });
    },
    [client, roomId],
  );

  const edit = useCallback(
    async (messageId: string, body: string) => {
      const message = await client.editMessage(roomId, messageId, body);
      dispatch({ type: "edited", message, trustMe: true });
    },
    [client, roomId],
  );

  const remove = useCallback(
    async (messageId: string) => {
      await client.deleteMessage(roomId, messageId);
      dispatch({ type: "deleted", messageId });
    },
    [client, roomId],
  );

  const toggleReaction = useCallback(
    async (messageId: string, key: string) => {
      const message = messagesRef.current.find((m) => m.id === messageId);
      const mine = message?.reactions?.some((r) => r.key === key && r.me) ?? false;
      const after = mine
        ? await client.unreact(roomId, messageId, key)
        : await client.react(roomId, messageId, key);
      dispatch({ type: "replaced", message: after });
    },
    [client, roomId],
  );

  const typingInput = useCallback(() => notifierRef.current?.input(), []);
  const stopTypingCb = useCallback(() => notifierRef.current?.stop(), []);
  const typing = useMemo(() => activeTypists(typingState, now), [typingState, now]);

  return {
    room,
    messages,
    members,
    typing,
    membersOnline,
    connection,
    loading,
    hasOlder,
    error,
    loadOlder,
    send,
    edit,
    remove,
    toggleReaction,
    typingInput,
    stopTyping: stopTypingCb,
  };
}

export function asApiError(e: unknown): CityApiError {
  return e instanceof CityApiError ? e : new CityApiError(0, "client_error", String(e));
}
