import type { CityClient, Room } from "@daarion/city-client";
import { useEffect, useState } from "react";
import { href } from "../router";
import { ErrorNote, usePolling } from "./common";

export function RoomsPage({ client }: { client: CityClient }) {
  const { data: rooms, error } = usePolling(() => client.listRooms(), 10_000, [client]);
  useEffect(() => {
    document.title = "Rooms · DAARION City";
  }, []);
  return (
    <section aria-labelledby="rooms-title">
      <h1 id="rooms-title">Rooms</h1>
      <ErrorNote error={error} />
      {!rooms && !error && <p>Loading…</p>}
      {rooms && (
        <ul className="cards" data-testid="rooms">
          {rooms.map((room) => (
            <RoomCard key={room.id} room={room} />
          ))}
        </ul>
      )}
      <NewRoom client={client} />
    </section>
  );
}

function RoomCard({ room }: { room: Room }) {
  return (
    <li className="card">
      <a href={href({ page: "room", roomId: room.id })} className="card__link">
        <span className="card__title">{room.name}</span>
        <span className="card__meta" data-testid={`online-${room.slug}`}>
          {room.members_online} online
        </span>
      </a>
      {room.description && <p className="card__text">{room.description}</p>}
    </li>
  );
}

function NewRoom({ client }: { client: CityClient }) {
  const [name, setName] = useState("");
  const [error, setError] = useState<string | null>(null);
  async function create(event: React.FormEvent) {
    event.preventDefault();
    const slug = name
      .toLowerCase()
      .trim()
      .replace(/[^a-z0-9_-]+/g, "-")
      .replace(/^-+|-+$/g, "")
      .slice(0, 64);
    try {
      const room = await client.createRoom({ name: name.trim(), slug });
      window.location.hash = href({ page: "room", roomId: room.id });
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    }
  }
  return (
    <form className="inline-form" onSubmit={(e) => void create(e)}>
      <label htmlFor="new-room">New room</label>
      <input id="new-room" value={name} onChange={(e) => setName(e.target.value)} maxLength={100} required />
      <button type="submit" disabled={name.trim().length < 2}>
        Create
      </button>
      {error && <p role="alert" className="error">{error}</p>}
    </form>
  );
}
