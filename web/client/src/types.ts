/**
 * The shapes the gateway speaks. REST shapes are aliases of the types generated from
 * its OpenAPI document (./openapi.ts, checked current by `npm run openapi:check`);
 * WebSocket frames are not in OpenAPI, so they are written here by hand from SPEC §7.
 */

import type { components, paths } from "./openapi.js";

type Schemas = components["schemas"];

export type { components, paths };

export type Room = Schemas["RoomOut"];
export type RoomPage = Schemas["RoomPageOut"];
export type Message = Schemas["MessageOut"];
export type FeedEvent = Schemas["FeedEventOut"];
export type PresenceUser = Schemas["PresenceUserOut"];
export type PresenceList = Schemas["PresenceListOut"];
export type Stats = Schemas["StatsOut"];
export type HeartbeatAnswer = Schemas["HeartbeatOut"];
export type SecondMeAnswer = Schemas["InvokeOut"];
export type SecondMeHistoryItem = Schemas["HistoryItemOut"];
export type ApiErrorBody = Schemas["ErrorOut"];
export type CreateRoomBody = Schemas["CreateRoomBody"];

export type PresenceStatus = "online" | "away" | "offline";

// --- /ws/city/rooms/{room_id} (SPEC §7) --------------------------------------------

export type RoomClientFrame =
  | { event: "room.join"; room_id: string }
  | { event: "room.leave"; room_id: string }
  | { event: "room.message.send"; room_id: string; body: string; client_msg_id?: string }
  | { event: "ping" };

export type RoomServerFrame =
  | { event: "room.message"; room_id: string; message: Message }
  | { event: "room.join"; room_id: string; user_id: string }
  | { event: "room.leave"; room_id: string; user_id: string }
  | { event: "room.presence"; room_id: string; user_id: string; status: PresenceStatus }
  | { event: "pong" }
  | { event: "error"; code: string; message: string };

// --- /ws/city/presence ------------------------------------------------------------

export type PresenceClientFrame =
  | {
      event: "presence.heartbeat";
      user_id: string;
      status?: "online" | "away";
      last_active_ago?: number;
      device_id?: string;
    }
  | { event: "ping" };

export type PresenceServerFrame =
  | { event: "presence.update"; user_id: string; status: PresenceStatus; last_active_ago: number }
  | { event: "pong" }
  | { event: "error"; code: string; message: string };
