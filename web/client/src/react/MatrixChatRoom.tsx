import { useEffect, useId, useRef, useState, type FormEvent, type KeyboardEvent } from "react";
import type { CityClient } from "../client.js";
import type { Message } from "../types.js";
import { asApiError, useCityRoom, type RoomMember } from "./useCityRoom.js";
import { usePresenceHeartbeat } from "./usePresenceHeartbeat.js";

export interface MatrixChatRoomProps {
  client: CityClient;
  roomId: string;
  /** Run the presence heartbeat while the room is shown (default true). Turn off
   *  when the application already runs one `usePresenceHeartbeat` for the whole page. */
  heartbeat?: boolean;
  /** Called when the token is refused (401): sign in again. */
  onUnauthorized?: () => void;
}

/**
 * A city room, live: messages (older pages on demand), a composer, and the people in
 * it with their presence; it keeps the user present with `usePresenceHeartbeat`.
 * Unstyled apart from class names (`city-chat__…`); bring your own CSS.
 */
export function MatrixChatRoom({ client, roomId, heartbeat = true, onUnauthorized }: MatrixChatRoomProps) {
  const presence = usePresenceHeartbeat({
    token: client.token,
    baseUrl: client.baseUrl,
    enabled: heartbeat,
    onUnauthorized,
  });
  const room = useCityRoom(client, roomId);
  const composerId = useId();
  const [draft, setDraft] = useState("");
  const [sending, setSending] = useState(false);
  const [sendError, setSendError] = useState<string | null>(null);
  const bottom = useRef<HTMLDivElement>(null);
  const newest = room.messages[room.messages.length - 1]?.id;
  useEffect(() => {
    bottom.current?.scrollIntoView?.({ block: "end" });
  }, [newest]);

  async function submit(event?: FormEvent) {
    event?.preventDefault();
    const body = draft.trim();
    if (!body || sending) return;
    setSending(true);
    setSendError(null);
    try {
      await room.send(body);
      setDraft("");
    } catch (e) {
      const error = asApiError(e);
      setSendError(
        error.code === "rate_limited"
          ? "You are sending too fast; wait a moment and try again."
          : `Not sent: ${error.message}`,
      );
    } finally {
      setSending(false);
    }
  }

  function onKeyDown(event: KeyboardEvent<HTMLTextAreaElement>) {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      void submit();
    }
  }

  return (
    <section className="city-chat" aria-label={room.room ? `Room ${room.room.name}` : "Room"}>
      <header className="city-chat__header">
        <h2>{room.room?.name ?? roomId}</h2>
        <p className="city-chat__meta">
          <span data-testid="members-online">{room.membersOnline} online here</span>
          {" · "}
          <span data-testid="connection" className={`city-chat__conn city-chat__conn--${room.connection}`}>
            {room.connection === "open" ? "live" : room.connection === "connecting" ? "connecting…" : "disconnected"}
          </span>
          {heartbeat && (
            <>
              {" · you are "}
              <span data-testid="my-status" className={`city-status city-status--${presence.status}`}>
                {presence.status}
              </span>
            </>
          )}
        </p>
        {room.room?.matrix_alias && (
          <p className="city-chat__meta">
            In Matrix: <code>{room.room.matrix_alias}</code>
          </p>
        )}
      </header>
      {room.error && (
        <p role="alert" className="city-chat__error">
          {room.error.message}
        </p>
      )}
      <div className="city-chat__body">
        <div className="city-chat__timeline">
          {room.hasOlder && (
            <button type="button" className="city-chat__older" onClick={() => void room.loadOlder()}>
              Load older messages
            </button>
          )}
          <ol className="city-chat__messages" aria-live="polite" aria-relevant="additions" data-testid="messages">
            {room.loading && <li className="city-chat__empty">Loading…</li>}
            {!room.loading && room.messages.length === 0 && (
              <li className="city-chat__empty">No messages yet. Say hello!</li>
            )}
            {room.messages.map((m) => (
              <MessageItem key={m.id} message={m} mine={m.author_user_id === client.userId} />
            ))}
          </ol>
          <div ref={bottom} />
        </div>
        <MemberList members={room.members} />
      </div>
      {/* Typing indicators, replies and reactions need SPEC §13 in the API: not yet. */}
      <form className="city-chat__composer" onSubmit={(e) => void submit(e)}>
        <label htmlFor={composerId} className="city-visually-hidden">
          Message
        </label>
        <textarea
          id={composerId}
          value={draft}
          rows={2}
          maxLength={4000}
          placeholder="Write a message… (Enter sends, Shift+Enter for a new line)"
          onChange={(e) => setDraft(e.target.value)}
          onKeyDown={onKeyDown}
        />
        <button type="submit" disabled={sending || !draft.trim()}>
          {sending ? "Sending…" : "Send"}
        </button>
      </form>
      {sendError && (
        <p role="alert" className="city-chat__error">
          {sendError}
        </p>
      )}
    </section>
  );
}

function MessageItem({ message, mine }: { message: Message; mine: boolean }) {
  const author = message.author_user_id ?? message.author_agent_id ?? message.author_matrix_id ?? "?";
  const time = new Date(message.created_at);
  return (
    <li className={`city-chat__message${mine ? " city-chat__message--mine" : ""}`} data-message-id={message.id}>
      <div className="city-chat__author">
        <span>{author}</span>
        {message.author_matrix_id && <span className="city-badge">Matrix</span>}
        {message.author_agent_id && <span className="city-badge">agent</span>}
        <time dateTime={message.created_at}>{time.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}</time>
      </div>
      <p className="city-chat__text">{message.body}</p>
    </li>
  );
}

function MemberList({ members }: { members: RoomMember[] }) {
  return (
    <aside className="city-chat__members" aria-label="People in this room">
      <h3>People here</h3>
      {members.length === 0 ? (
        <p className="city-chat__empty">Nobody has written yet.</p>
      ) : (
        <ul data-testid="members">
          {members.map((m) => (
            <li key={m.id} data-member={m.id}>
              <span
                className={`city-dot city-dot--${m.status ?? "unknown"}`}
                aria-hidden="true"
              />
              <span>{m.id}</span>{" "}
              <span className="city-chat__presence">
                {m.kind === "matrix" ? "via Matrix" : (m.status ?? "…")}
              </span>
            </li>
          ))}
        </ul>
      )}
    </aside>
  );
}
