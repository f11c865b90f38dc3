import type { CityClient, FeedEvent } from "@daarion/city-client";
import { useEffect, useState } from "react";
import { href } from "../router";
import { ErrorNote, usePolling } from "./common";

/** The City Home dashboard: counters and the live feed (polled every 5 s). */
export function CityHome({ client }: { client: CityClient }) {
  const stats = usePolling(() => client.stats(), 10_000, [client]);
  const feed = usePolling(() => client.feed({ limit: 20 }), 5_000, [client]);
  const [older, setOlder] = useState<FeedEvent[]>([]);
  const [olderError, setOlderError] = useState<unknown>(null);
  useEffect(() => {
    document.title = "City Home · DAARION City";
  }, []);
  const events = [...(feed.data ?? []), ...older.filter((e) => !feed.data?.some((f) => f.id === e.id))];

  async function loadOlder() {
    const last = events[events.length - 1];
    if (!last) return;
    try {
      const page = await client.feed({ limit: 20, before: last.id });
      setOlder((o) => [...o, ...page]);
    } catch (e) {
      setOlderError(e);
    }
  }

  return (
    <section aria-labelledby="home-title">
      <h1 id="home-title">City Home</h1>
      <ErrorNote error={stats.error} />
      <dl className="stats" data-testid="stats">
        <Stat label="Rooms" value={stats.data?.rooms} />
        <Stat label="Messages in 24 h" value={stats.data?.messages_24h} />
        <Stat label="People online" value={stats.data?.users_online} />
      </dl>
      <h2>Live feed</h2>
      <ErrorNote error={feed.error ?? olderError} />
      {events.length === 0 && !feed.error && <p>Nothing has happened yet.</p>}
      <ol className="feed" aria-live="polite" data-testid="feed">
        {events.map((event) => (
          <FeedItem key={event.id} event={event} />
        ))}
      </ol>
      {events.length >= 20 && (
        <button type="button" onClick={() => void loadOlder()}>
          Older events
        </button>
      )}
    </section>
  );
}

function Stat({ label, value }: { label: string; value: number | null | undefined }) {
  return (
    <div className="stat">
      <dt>{label}</dt>
      <dd>{value === undefined ? "…" : value === null ? "—" : value}</dd>
    </div>
  );
}

function FeedItem({ event }: { event: FeedEvent }) {
  const payload = event.payload as { snippet?: string; body?: string; source?: string };
  const who = event.user_id ?? event.agent_id ?? (payload.source === "matrix" ? "Matrix user" : "city");
  return (
    <li className="feed__item">
      <div className="feed__meta">
        <span className="badge">{event.kind.replace(/_/g, " ")}</span>
        <span>{who}</span>
        {event.room_id && <a href={href({ page: "room", roomId: event.room_id })}>{event.room_id.replace(/^room_city_/, "#")}</a>}
        {payload.source === "matrix" && <span className="badge">Matrix</span>}
        <time dateTime={event.created_at}>{new Date(event.created_at).toLocaleString()}</time>
      </div>
      <p>{payload.snippet ?? payload.body ?? ""}</p>
    </li>
  );
}
