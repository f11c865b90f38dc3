"""This process's presence sockets: every `presence.update` frame goes to all of them.

The presence service (gateway/core/presence/service.py) hands frames to
`deliver` through the core port `PresenceDelivery`; the presence WebSocket route
(gateway/realtime/ws_presence.py) adds and removes sockets.
"""

from __future__ import annotations

import logging

from gateway.realtime.sockets import CLOSE_TOO_SLOW, ClientSocket, outgoing

log = logging.getLogger(__name__)


class PresenceSockets:
    """This process's presence sockets; implements gateway.core.ports.PresenceDelivery."""

    def __init__(self) -> None:
        self._sockets: dict[ClientSocket, None] = {}

    def __len__(self) -> int:
        return len(self._sockets)

    def add(self, sock: ClientSocket) -> None:
        self._sockets[sock] = None

    def remove(self, sock: ClientSocket) -> None:
        self._sockets.pop(sock, None)

    def deliver(self, frame: str) -> None:
        """Queue the frame on every socket (never blocks); drop those too far behind."""
        message = outgoing(frame)
        slow = [sock for sock in self._sockets if not sock.offer(message)]
        for sock in slow:
            log.info("dropping slow presence websocket of %s", sock.user_id)
            sock.close(CLOSE_TOO_SLOW, "client too slow")
            self.remove(sock)

    def close_all(self, code: int, reason: str) -> list[ClientSocket]:
        sockets = list(self._sockets)
        for sock in sockets:
            sock.close(code, reason)
        return sockets
