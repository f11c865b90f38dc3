import type { CityClient } from "@daarion/city-client";
import { MatrixChatRoom } from "@daarion/city-client/react";
import { href } from "../router";

export function RoomPage({ client, roomId }: { client: CityClient; roomId: string }) {
  return (
    <div>
      <p className="crumbs">
        <a href={href({ page: "rooms" })}>← All rooms</a>
      </p>
      {/* The app runs one heartbeat for the tab (App.tsx), so the room does not. */}
      <MatrixChatRoom key={roomId} client={client} roomId={roomId} heartbeat={false} />
    </div>
  );
}
