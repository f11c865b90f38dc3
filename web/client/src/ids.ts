/** A fresh `client_msg_id`: the key that makes a resent message count once. */
export function newClientMsgId(): string {
  const c = globalThis.crypto as Crypto | undefined;
  if (c && typeof c.randomUUID === "function") return c.randomUUID();
  return `c_${Date.now().toString(36)}_${Math.random().toString(36).slice(2)}`;
}
