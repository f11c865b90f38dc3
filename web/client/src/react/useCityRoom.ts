import { useCallback, useEffect, useRef, useState } from "react";
import type { CityClient } from "../client.js";
import { CityApiError } from "../errors.js";
import type { SocketState } from "../sockets.js";
import type { Message, PresenceStatus, Room } from "../types.js";

export interface RoomMember {
  /** A city user (`u_…`) or, for people writing from Matrix, their Matrix id. */
  id: string;
  kind: "city" | "matrix";
  /** City users: from GET /city/presence and `room.presence` frames. Matrix: unknown yet. */
  status: PresenceStatus | null;
}

export interface CityRoomState {
  room: Room | null;
  /** Oldest first, without duplicates. */
  messages: Message[];
  /** People seen in this room (authors, joiners) with their presence. */
  members: RoomMember[];
  membersOnline: number;
  connection: SocketState;
  loading: boolean;
  hasOlder: boolean;
  error: CityApiError | null;
  loadOlder: () => Promise<void>;
  send: (body: string) => Promise<void>;
}

const PAGE = 50;

/**
 * One room, live: the latest page, older pages on demand (`before=`), new messages
 * from the room socket (reconnecting), and the presence of the people in it.
 *
 * The API has no member list yet (SPEC §13, `GET /city/rooms/{id}/members`), so
 * "members" are the people this page has seen: message authors and `room.join`
 * frames; their presence comes from GET /city/presence and `room.presence` frames.
 */
export function useCityRoom(client: CityClient, roomId: string): CityRoomState {
  const [room, setRoom] = useState<Room | null>(null);
  const [messages, setMessages] = useState<Message[]>([]);
  const [presence, setPresence] = useState<Record<string, PresenceStatus>>({});
  const [joined, setJoined] = useState<string[]>([]);
  const [membersOnline, setMembersOnline] = useState(0);
  const [connection, setConnection] = useState<SocketState>("connecting");
  const [loading, setLoading] = useState(true);
  const [hasOlder, setHasOlder] = useState(false);
  const [error, setError] = useState<CityApiError | null>(null);
  const known = useRef(new Set<string>());

  const merge = useCallback((incoming: Message[], where: "older" | "newer") => {
    const fresh = incoming.filter((m) => !known.current.has(m.id));
    for (const m of fresh) known.current.add(m.id);
    if (fresh.length === 0) return;
    setMessages((current) => (where === "older" ? [...fresh, ...current] : [...current, ...fresh]));
  }, []);

  useEffect(() => {
    let cancelled = false;
    known.current = new Set();
    setMessages([]);
    setJoined([]);
    setLoading(true);
    setError(null);
    client
      .getRoom(roomId)
      .then((page) => {
        if (cancelled) return;
        setRoom(page.room);
        setMembersOnline(page.members_online);
        merge(page.messages, "newer");
        setHasOlder(page.messages.length >= PAGE);
      })
      .catch((e: unknown) => !cancelled && setError(asApiError(e)))
      .finally(() => !cancelled && setLoading(false));

    const socket = client.roomSocket(roomId, {
      onState: (s) => !cancelled && setConnection(s),
      onClose: (code, reason) => {
        if (!cancelled && code !== 1000) setError(new CityApiError(code, "socket_closed", reason));
      },
    });
    const off = socket.on((frame) => {
      if (cancelled || ("room_id" in frame && frame.room_id !== roomId)) return;
      switch (frame.event) {
        case "room.message":
          merge([frame.message], "newer");
          break;
        case "room.join":
          setJoined((j) => (j.includes(frame.user_id) ? j : [...j, frame.user_id]));
          setPresence((p) => ({ ...p, [frame.user_id]: p[frame.user_id] ?? "online" }));
          setMembersOnline((n) => n + 1);
          break;
        case "room.leave":
          setMembersOnline((n) => Math.max(0, n - 1));
          break;
        case "room.presence":
          setPresence((p) => ({ ...p, [frame.user_id]: frame.status }));
          break;
        default:
          break;
      }
    });
    return () => {
      cancelled = true;
      off();
      socket.close();
    };
  }, [client, roomId, merge]);

  // Presence of the city users on the page, refreshed when new ones appear and every 30 s.
  const cityIds = Array.from(
    new Set([
      ...messages.map((m) => m.author_user_id).filter((u): u is string => !!u),
      ...joined,
    ]),
  ).slice(-200);
  const idsKey = cityIds.join(",");
  useEffect(() => {
    if (!idsKey) return undefined;
    let cancelled = false;
    const ids = idsKey.split(",");
    const refresh = () =>
      client
        .presence(ids)
        .then((answer) => {
          if (cancelled) return;
          setPresence((p) => {
            const next = { ...p };
            for (const u of answer.users) next[u.user_id] = u.status;
            return next;
          });
        })
        .catch(() => undefined);
    void refresh();
    const timer = setInterval(refresh, 30_000);
    return () => {
      cancelled = true;
      clearInterval(timer);
    };
  }, [client, idsKey]);

  const loadOlder = useCallback(async () => {
    const oldest = messages[0];
    if (!oldest) return;
    try {
      const page = await client.listMessages(roomId, { before: oldest.id, limit: PAGE });
      merge(page, "older");
      setHasOlder(page.length >= PAGE);
    } catch (e) {
      setError(asApiError(e));
    }
  }, [client, roomId, messages, merge]);

  const send = useCallback(
    async (body: string) => {
      const message = await client.postMessage(roomId, body);
      merge([message], "newer");
    },
    [client, roomId, merge],
  );

  const matrixIds = Array.from(
    new Set(messages.map((m) => m.author_matrix_id).filter((u): u is string => !!u)),
  );
  const members: RoomMember[] = [
    ...cityIds.map((id) => ({ id, kind: "city" as const, status: presence[id] ?? null })),
    ...matrixIds.map((id) => ({ id, kind: "matrix" as const, status: null })),
  ];
  return {
    room,
    messages,
    members,
    membersOnline,
    connection,
    loading,
    hasOlder,
    error,
    loadOlder,
    send,
  };
}

export function asApiError(e: unknown): CityApiError {
  return e instanceof CityApiError ? e : new CityApiError(0, "client_error", String(e));
}
