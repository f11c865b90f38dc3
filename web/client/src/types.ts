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
export type Attachment = Schemas["AttachmentOut"];
export type Reaction = Schemas["ReactionOut"];
export type RoomMemberOut = Schemas["MemberOut"];
export type RoomMembers = Schemas["MembersOut"];

export type PresenceStatus = "online" | "away" | "offline";
/** Matrix users' presence keeps Matrix's names (`unavailable` is their `away`). */
export type MatrixPresenceStatus = "online" | "unavailable" | "offline";

/** Who did something in a room: a city user or a Matrix user (exactly one is set). */
export type Actor = { user_id: string; matrix_user_id?: undefined } | { matrix_user_id: string; user_id?: undefined };

// --- /ws/city/rooms/{room_id} (SPEC §7, §13; docs/asyncapi.yaml) -------------------

export type RoomClientFrame =
  | { event: "room.join"; room_id: string }
  | { event: "room.leave"; room_id: string }
  | {
      event: "room.message.send";
      room_id: string;
      body: string;
      client_msg_id?: string;
      reply_to?: string;
    }
  | { event: "room.typing"; room_id: string; typing: boolean }
  | { event: "ping" };

export type RoomTypingFrame = { event: "room.typing"; room_id: string; typing: boolean } & Actor;
/** `count` is the key's count after the change; `me` is not in frames (compare `user_id`). */
export type RoomReactionFrame = {
  event: "room.reaction";
  room_id: string;
  message_id: string;
  key: string;
  count: number;
  added: boolean;
} & Actor;
export type RoomPresenceFrame =
  | { event: "room.presence"; room_id: string; user_id: string; matrix_user_id?: undefined; status: PresenceStatus }
  | { event: "room.presence"; room_id: string; matrix_user_id: string; user_id?: undefined; status: MatrixPresenceStatus };

export type RoomServerFrame =
  | { event: "room.message"; room_id: string; message: Message }
  | { event: "room.message_edited"; room_id: string; message: Message }
  | { event: "room.message_deleted"; room_id: string; message_id: string }
  | RoomReactionFrame
  | RoomTypingFrame
  | { event: "room.join"; room_id: string; user_id: string }
  | { event: "room.leave"; room_id: string; user_id: string }
  | RoomPresenceFrame
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
