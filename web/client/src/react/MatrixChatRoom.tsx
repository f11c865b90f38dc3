import {
  useEffect,
  useId,
  useMemo,
  useRef,
  useState,
  type FormEvent,
  type KeyboardEvent,
} from "react";
import type { CityClient } from "../client.js";
import {
  authorOf,
  memberName,
  snippet,
  statusLabel,
  typingText,
  type RoomMember,
} from "../roomState.js";
import type { Attachment, Message } from "../types.js";
import { asApiError, useCityRoom } from "./useCityRoom.js";
import { usePresenceHeartbeat } from "./usePresenceHeartbeat.js";

export interface MatrixChatRoomProps {
  client: CityClient;
  roomId: string;
  /** Run the presence heartbeat while the room is shown (default true). Turn off
   *  when the application already runs one `usePresenceHeartbeat` for the whole page. */
  heartbeat?: boolean;
  /** Called when the token is refused (401): sign in again. */
  onUnauthorized?: () => void;
  /** The emojis offered by the reaction picker. */
  reactionKeys?: readonly string[];
}

export const DEFAULT_REACTIONS = ["👍", "❤️", "😂", "🎉", "😮", "🙏"] as const;

const EMOJI_NAMES: Record<string, string> = {
  "👍": "thumbs up",
  "❤️": "heart",
  "😂": "laughing",
  "🎉": "party",
  "😮": "surprised",
  "🙏": "thanks",
};

/**
 * A city room, live: messages (older pages on demand) with replies, reactions, edits,
 * deletes and attachments; a composer that says when you type; who else is typing;
 * the members (city and Matrix) with their presence. It keeps the user present with
 * `usePresenceHeartbeat`. Unstyled apart from class names (`city-chat__…`).
 */
export function MatrixChatRoom({
  client,
  roomId,
  heartbeat = true,
  onUnauthorized,
  reactionKeys = DEFAULT_REACTIONS,
}: MatrixChatRoomProps) {
  const presence = usePresenceHeartbeat({
    token: client.token,
    baseUrl: client.baseUrl,
    enabled: heartbeat,
    onUnauthorized,
  });
  const room = useCityRoom(client, roomId);
  const composerId = useId();
  const composer = useRef<HTMLTextAreaElement>(null);
  const [draft, setDraft] = useState("");
  const [replyTo, setReplyTo] = useState<Message | null>(null);
  const [sending, setSending] = useState(false);
  const [sendError, setSendError] = useState<string | null>(null);
  const [actionError, setActionError] = useState<string | null>(null);
  const bottom = useRef<HTMLDivElement>(null);
  const newest = room.messages[room.messages.length - 1]?.id;
  useEffect(() => {
    bottom.current?.scrollIntoView?.({ block: "end" });
  }, [newest]);

  const names = useMemo(() => {
    const map = new Map<string, string>();
    for (const m of room.members) map.set(m.id, memberName(m));
    return map;
  }, [room.members]);
  const byId = useMemo(() => new Map(room.messages.map((m) => [m.id, m])), [room.messages]);
  const nameOf = (id: string) => names.get(id) ?? id;
  // A reply target deleted meanwhile: drop it from the composer.
  useEffect(() => {
    if (replyTo && !byId.has(replyTo.id)) setReplyTo(null);
  }, [replyTo, byId]);

  async function submit(event?: FormEvent) {
    event?.preventDefault();
    const body = draft.trim();
    if (!body || sending) return;
    setSending(true);
    setSendError(null);
    try {
      await room.send(body, { replyTo: replyTo?.id });
      setDraft("");
      setReplyTo(null);
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
    } else if (event.key === "Escape" && replyTo) {
      event.preventDefault();
      setReplyTo(null);
    }
  }

  async function act(what: string, action: () => Promise<void>) {
    setActionError(null);
    try {
      await action();
    } catch (e) {
      const error = asApiError(e);
      setActionError(
        error.code === "rate_limited" ? `${what}: too fast, try again in a moment.` : `${what}: ${error.message}`,
      );
    }
  }

  function startReply(message: Message) {
    setReplyTo(message);
    composer.current?.focus();
  }

  const typists = room.typing.map(nameOf);

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
              <MessageItem
                key={m.id}
                client={client}
                message={m}
                mine={m.author_user_id === client.userId}
                authorName={nameOf(authorOf(m))}
                repliedTo={m.reply_to ? (byId.get(m.reply_to) ?? null) : null}
                nameOf={nameOf}
                reactionKeys={reactionKeys}
                onReply={() => startReply(m)}
                onReact={(key) => act("Reaction not saved", () => room.toggleReaction(m.id, key))}
                onEdit={(body) => act("Not edited", () => room.edit(m.id, body))}
                onDelete={() => act("Not deleted", () => room.remove(m.id))}
              />
            ))}
          </ol>
          <div ref={bottom} />
        </div>
        <MemberList members={room.members} />
      </div>
      {actionError && (
        <p role="alert" className="city-chat__error">
          {actionError}
        </p>
      )}
      <p className="city-chat__typing" aria-live="polite" data-testid="typing">
        {typingText(typists)}
      </p>
      <form className="city-chat__composer" onSubmit={(e) => void submit(e)}>
        {replyTo && (
          <div className="city-chat__replying" data-testid="replying-to">
            <span>
              Replying to <strong>{nameOf(authorOf(replyTo))}</strong>: {snippet(replyTo.body, 60)}
            </span>
            <button type="button" className="city-chat__icon" aria-label="Cancel reply" onClick={() => setReplyTo(null)}>
              ✕
            </button>
          </div>
        )}
        <div className="city-chat__compose-row">
          <label htmlFor={composerId} className="city-visually-hidden">
            Message
          </label>
          <textarea
            id={composerId}
            ref={composer}
            value={draft}
            rows={2}
            maxLength={4000}
            placeholder="Write a message… (Enter sends, Shift+Enter for a new line)"
            onChange={(e) => {
              setDraft(e.target.value);
              if (e.target.value.trim()) room.typingInput();
              else room.stopTyping();
            }}
            onBlur={() => room.stopTyping()}
            onKeyDown={onKeyDown}
          />
          <button type="submit" disabled={sending || !draft.trim()}>
            {sending ? "Sending…" : "Send"}
          </button>
        </div>
      </form>
      {sendError && (
        <p role="alert" className="city-chat__error">
          {sendError}
        </p>
      )}
    </section>
  );
}

interface MessageItemProps {
  client: CityClient;
  message: Message;
  mine: boolean;
  authorName: string;
  repliedTo: Message | null;
  nameOf: (id: string) => string;
  reactionKeys: readonly string[];
  onReply: () => void;
  onReact: (key: string) => Promise<void>;
  onEdit: (body: string) => Promise<void>;
  onDelete: () => Promise<void>;
}

function MessageItem(props: MessageItemProps) {
  const { client, message, mine, authorName, repliedTo, nameOf, reactionKeys } = props;
  const [picking, setPicking] = useState(false);
  const [editing, setEditing] = useState(false);
  const [confirming, setConfirming] = useState(false);
  const [editDraft, setEditDraft] = useState(message.body);
  const editId = useId();
  const pickerId = useId();
  const time = new Date(message.created_at);

  async function saveEdit(event?: FormEvent) {
    event?.preventDefault();
    const body = editDraft.trim();
    if (!body) return;
    if (body !== message.body) await props.onEdit(body);
    setEditing(false);
  }

  return (
    <li
      className={`city-chat__message${mine ? " city-chat__message--mine" : ""}`}
      data-message-id={message.id}
      id={`msg-${message.id}`}
      tabIndex={-1}
    >
      <div className="city-chat__author">
        <span>{authorName}</span>
        {message.author_matrix_id && <span className="city-badge">Matrix</span>}
        {message.author_agent_id && <span className="city-badge">agent</span>}
        <time dateTime={message.created_at}>{time.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}</time>
        {message.edited_at && <span className="city-chat__edited">(edited)</span>}
      </div>
      {message.reply_to && (
        <ReplyQuote target={repliedTo} targetId={message.reply_to} nameOf={nameOf} />
      )}
      {editing ? (
        <form className="city-chat__edit" onSubmit={(e) => void saveEdit(e)}>
          <label htmlFor={editId} className="city-visually-hidden">
            Edit message
          </label>
          <textarea
            id={editId}
            value={editDraft}
            rows={2}
            maxLength={4000}
            autoFocus
            onChange={(e) => setEditDraft(e.target.value)}
            onKeyDown={(e) => {
              if (e.key === "Escape") {
                e.preventDefault();
                setEditing(false);
              } else if (e.key === "Enter" && !e.shiftKey) {
                e.preventDefault();
                void saveEdit();
              }
            }}
          />
          <button type="submit" disabled={!editDraft.trim()}>
            Save
          </button>
          <button type="button" className="city-chat__secondary" onClick={() => setEditing(false)}>
            Cancel
          </button>
        </form>
      ) : (
        <>
          {message.attachment && <AttachmentView client={client} attachment={message.attachment} caption={message.body} />}
          {(!message.attachment || message.body !== message.attachment.name) && (
            <p className="city-chat__text">{message.body}</p>
          )}
        </>
      )}
      {(message.reactions?.length ?? 0) > 0 && (
        <ul className="city-chat__reactions" aria-label="Reactions" data-testid="reactions">
          {message.reactions.map((r) => (
            <li key={r.key}>
              <button
                type="button"
                className={`city-chat__reaction${r.me ? " city-chat__reaction--me" : ""}`}
                aria-pressed={r.me}
                aria-label={`${r.key} ${r.count}${r.me ? ", you reacted (remove)" : " (add yours)"}`}
                data-reaction={r.key}
                onClick={() => void props.onReact(r.key)}
              >
                <span aria-hidden="true">{r.key}</span> <span aria-hidden="true">{r.count}</span>
              </button>
            </li>
          ))}
        </ul>
      )}
      {!editing && (
        <div className="city-chat__actions" role="group" aria-label={`Actions for the message from ${authorName}`}>
          <button type="button" className="city-chat__action" onClick={props.onReply}>
            Reply
          </button>
          <button
            type="button"
            className="city-chat__action"
            aria-expanded={picking}
            aria-controls={pickerId}
            onClick={() => setPicking((p) => !p)}
          >
            React
          </button>
          {mine && !confirming && (
            <>
              <button
                type="button"
                className="city-chat__action"
                onClick={() => {
                  setEditDraft(message.body);
                  setEditing(true);
                  setPicking(false);
                }}
              >
                Edit
              </button>
              <button type="button" className="city-chat__action" onClick={() => setConfirming(true)}>
                Delete
              </button>
            </>
          )}
          {mine && confirming && (
            <span className="city-chat__confirm" role="alert">
              Delete this message?{" "}
              <button type="button" className="city-chat__action city-chat__action--danger" onClick={() => void props.onDelete()}>
                Yes, delete
              </button>
              <button type="button" className="city-chat__action" autoFocus onClick={() => setConfirming(false)}>
                Keep
              </button>
            </span>
          )}
          {picking && (
            <div
              id={pickerId}
              className="city-chat__picker"
              role="group"
              aria-label="Pick a reaction"
              onKeyDown={(e) => {
                if (e.key === "Escape") setPicking(false);
              }}
            >
              {reactionKeys.map((key) => (
                <button
                  key={key}
                  type="button"
                  className="city-chat__emoji"
                  aria-label={`React ${EMOJI_NAMES[key] ?? key}`}
                  title={EMOJI_NAMES[key] ?? key}
                  onClick={() => {
                    setPicking(false);
                    const mineAlready = message.reactions?.some((r) => r.key === key && r.me);
                    if (!mineAlready) void props.onReact(key);
                  }}
                >
                  {key}
                </button>
              ))}
            </div>
          )}
        </div>
      )}
    </li>
  );
}

function ReplyQuote({
  target,
  targetId,
  nameOf,
}: {
  target: Message | null;
  targetId: string;
  nameOf: (id: string) => string;
}) {
  if (!target) {
    return (
      <p className="city-chat__quote city-chat__quote--missing" data-testid="reply-quote">
        ↪ In reply to an earlier message
      </p>
    );
  }
  return (
    <a
      className="city-chat__quote"
      href={`#msg-${targetId}`}
      data-testid="reply-quote"
      onClick={(e) => {
        // In-page jump without touching the app's hash router.
        e.preventDefault();
        const el = document.getElementById(`msg-${targetId}`);
        el?.scrollIntoView?.({ block: "center" });
        el?.focus();
      }}
    >
      ↪ <strong>{nameOf(authorOf(target))}</strong>: {snippet(target.body)}
    </a>
  );
}

function AttachmentView({
  client,
  attachment,
  caption,
}: {
  client: CityClient;
  attachment: Attachment;
  caption: string;
}) {
  const url = client.resolveUrl(attachment.url);
  if (attachment.kind === "image") {
    return (
      <a href={url} target="_blank" rel="noopener noreferrer" className="city-chat__image-link">
        <img
          className="city-chat__image"
          src={url}
          alt={caption || attachment.name}
          loading="lazy"
          data-testid="attachment-image"
        />
      </a>
    );
  }
  const size = attachment.size != null ? ` (${formatSize(attachment.size)})` : "";
  return (
    <p className="city-chat__file">
      <a href={url} download={attachment.name} data-testid="attachment-file">
        <span aria-hidden="true">📎 </span>
        {attachment.name}
      </a>
      <span className="city-chat__file-meta">
        {" "}
        {attachment.kind !== "file" ? attachment.kind : ""}
        {size}
      </span>
    </p>
  );
}

export function formatSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

function MemberList({ members }: { members: RoomMember[] }) {
  return (
    <aside className="city-chat__members" aria-label="People in this room">
      <h3>People here ({members.length})</h3>
      {members.length === 0 ? (
        <p className="city-chat__empty">Nobody here yet.</p>
      ) : (
        <ul data-testid="members">
          {members.map((m) => (
            <li key={`${m.kind}:${m.id}`} data-member={m.id} data-status={m.status ?? ""}>
              <span className={`city-dot city-dot--${m.status === "unavailable" ? "away" : (m.status ?? "unknown")}`} aria-hidden="true" />
              <span className="city-chat__member-name">
                {memberName(m)}
                {m.displayName && m.displayName !== m.id && <span className="city-chat__member-id">{m.id}</span>}
              </span>
              {m.kind === "matrix" && <span className="city-badge">Matrix</span>}
              <span className="city-chat__presence">{statusLabel(m.status)}</span>
            </li>
          ))}
        </ul>
      )}
    </aside>
  );
}
