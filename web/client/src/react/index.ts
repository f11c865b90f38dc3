export {
  usePresenceHeartbeat,
  type PresenceHeartbeatState,
  type UsePresenceHeartbeatOptions,
} from "./usePresenceHeartbeat.js";
export { useCityRoom, asApiError, type CityRoomState, type RoomMember } from "./useCityRoom.js";
export { DEFAULT_REACTIONS, MatrixChatRoom, formatSize, type MatrixChatRoomProps } from "./MatrixChatRoom.js";
