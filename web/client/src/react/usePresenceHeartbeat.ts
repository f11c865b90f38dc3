import { useEffect, useRef, useState } from "react";
import {
  PresenceHeartbeat,
  type HeartbeatError,
  type PresenceHeartbeatOptions,
} from "../presence.js";
import type { PresenceStatus } from "../types.js";

export interface UsePresenceHeartbeatOptions
  extends Omit<PresenceHeartbeatOptions, "onStatus" | "token"> {
  /** The user's JWT; null/undefined = signed out (no heartbeat). */
  token: string | null | undefined;
  /** false pauses the heartbeat (and says offline). Default true. */
  enabled?: boolean;
}

export interface PresenceHeartbeatState {
  /** What the gateway last confirmed for this tab ("offline" before that). */
  status: PresenceStatus;
  deviceId: string | null;
  /** The last failure (network, 5xx, 429, 401…), cleared by the next success. */
  error: HeartbeatError | null;
  /** true after a 401: the heartbeat stopped; give it a fresh token. */
  unauthorized: boolean;
}

/**
 * Keep the signed-in user present while this component is mounted (SPEC §14):
 *
 *     const presence = usePresenceHeartbeat({ token });
 *     return <span>{presence.status}</span>;
 *
 * The heartbeat restarts when the token, user, base URL or away delay change; the
 * callbacks may change freely between renders.
 */
export function usePresenceHeartbeat(options: UsePresenceHeartbeatOptions): PresenceHeartbeatState {
  const { token, userId, baseUrl, awayAfterMs, deviceId, enabled = true } = options;
  const latest = useRef(options);
  latest.current = options;
  const [state, setState] = useState<PresenceHeartbeatState>({
    status: "offline",
    deviceId: null,
    error: null,
    unauthorized: false,
  });

  useEffect(() => {
    if (!token || !enabled) return undefined;
    const heartbeat = new PresenceHeartbeat({
      ...latest.current,
      token,
      onStatus: (status) => setState((s) => ({ ...s, status, error: null })),
      onError: (error) => {
        setState((s) => ({ ...s, error }));
        latest.current.onError?.(error);
      },
      onUnauthorized: (error) => {
        setState((s) => ({ ...s, status: "offline", error, unauthorized: true }));
        latest.current.onUnauthorized?.(error);
      },
    });
    setState({ status: "offline", deviceId: heartbeat.deviceId, error: null, unauthorized: false });
    heartbeat.start();
    return () => heartbeat.stop();
  }, [token, userId, baseUrl, awayAfterMs, deviceId, enabled]);

  return state;
}
