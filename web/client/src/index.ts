export { CityClient, type CityClientOptions } from "./client.js";
export { newClientMsgId } from "./ids.js";
export { CityApiError } from "./errors.js";
export {
  ACTIVITY_EVENTS,
  DEVICE_STORAGE_KEY,
  HEARTBEAT_PATH,
  HeartbeatError,
  PresenceHeartbeat,
  browserEnvironment,
  retryAfterMs,
  tabDeviceId,
  type PresenceEnvironment,
  type PresenceHeartbeatOptions,
} from "./presence.js";
export { PresenceSocket, RoomSocket, type SocketOptions, type SocketState } from "./sockets.js";
export { tokenClaims, userIdFromToken, type TokenClaims } from "./token.js";
export type * from "./types.js";
export {
  TYPING_TIMEOUT_MS,
  TypingNotifier,
  activeTypists,
  applyMemberFrame,
  applyReaction,
  applyTyping,
  authorOf,
  memberName,
  membersFromApi,
  messagesReducer,
  snippet,
  sortMembers,
  statusLabel,
  stopTyping,
  typingKey,
  typingText,
  withSelf,
  type MemberFrame,
  type MemberStatus,
  type MessagesAction,
  type RoomMember,
  type TypingState,
} from "./roomState.js";
