"""Fuzz both WebSocket protocols with hypothesis over real sockets (SPEC §5, §7).

A real gateway (in-process uvicorn, real PostgreSQL and Redis) gets generated frame
sequences on `/ws/city/rooms/{room_id}` and `/ws/city/presence`: valid frames mixed
with valid-shaped frames carrying wrong types, junk JSON, text that is not JSON,
binary frames, strings just under the frame limit, NUL characters, any Unicode and
unknown events. After each sequence the client sends `ping`. Properties:

- every server frame is a JSON object with a string `event`;
- every `error` frame has a non-empty string `code` and a string `message`, and
  never `unavailable` (the socket's 5xx: PostgreSQL and Redis are up here);
- the socket is not closed by anything in the sequence (nothing here is a reason
  to close: frames stay under the limit, the token is valid, limits are generous),
  and when it does close it carries a documented close code;
- the final `ping` gets its `pong`.

Bounded time: `CITY_FUZZ_EXAMPLES` (default 60) sequences per protocol, the same
every run; `CITY_FUZZ_SEED=<int>` draws others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import hypothesis.strategies as st
import orjson
import pytest
from hypothesis import given
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from gateway.core.auth import mint_token
from tests.conftest import JWT_SECRET, GatewayFactory
from tests.http.fuzzing import examples, fuzz_logged, fuzz_run, json_values
from tests.servers import InProcessGateway

EXAMPLES = examples(60)
USER = "u_wsfuzz"
ROOM = "room_city_general"
# Close codes a client may see, each with a documented reason (SPEC §7, §12,
# docs/realtime-rooms.md): normal, going away (shutdown), frame too big, the part is
# not running, uvicorn restarting, too slow (send queue full), bad/expired token,
# unknown room, too many sockets.
DOCUMENTED_CLOSE_CODES = {1000, 1001, 1009, 1011, 1012, 1013, 4401, 4404, 4429}
RECV_TIMEOUT = 15.0

Frame = str | bytes
# A frame to send, and whether it is a valid ping (it then gets a `pong` of its own).
Sent = tuple[Frame, bool]


# --- frames ---------------------------------------------------------------------------

_json = json_values(st.integers(min_value=-(2**63), max_value=2**64 - 1))
# Strings that reach the code behind validation: NULs, lone-surrogate escapes are in
# the raw frames below; here control characters, RTL, emoji, combining marks.
_nasty_text = st.sampled_from(
    ["", " ", "\x00", "a\x00b", "\u202e\u0634", "🏙️👩‍💻", "e\u0301", "\r\n", "%0a", "'; --"]
) | st.text(max_size=60)


def _huge(limit: int) -> st.SearchStrategy[str]:
    """Strings that keep the whole frame just under the socket's frame limit (bytes)."""
    room = limit - 512
    return st.sampled_from(["x" * room, "я" * (room // 2), "🏙" * (room // 4), "\x00" * (room // 6)])


def _encode(value: Any) -> str:
    return orjson.dumps(value).decode()


def _dumps_strategy(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Sent]:
    return values.map(lambda v: (_encode(v), False))


def _with_wrong_types(valid: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """The valid frame with one of its fields (not `event`) replaced by junk."""
    fields = [name for name in valid if name != "event"] + ["user_id"]
    return st.tuples(st.sampled_from(fields), _json).map(lambda pair: {**valid, pair[0]: pair[1]})


def _common_junk(limit: int) -> st.SearchStrategy[Sent]:
    not_a_ping = _json.filter(lambda v: not (isinstance(v, dict) and v.get("event") == "ping"))
    raw_text = st.sampled_from(
        [
            "",
            "{",
            "null",
            "[]",
            '{"event": null}',
            '{"event": "ping", "event": 5}',
            '{"event": "\\ud800"}',
            '{"event": "ping", "user_id": "\\ud800"}',
            '{"event": "room.join", "room_id": 1e400}',
            '{"event": "presence.heartbeat", "last_active_ago": 123456789012345678901234567890}',
            "[" * 5000 + "]" * 5000,
            '{"event":"x","a":' * 600 + "1" + "}" * 600,
        ]
    ) | st.text(max_size=80)
    return st.one_of(
        _dumps_strategy(not_a_ping),
        raw_text.map(lambda t: (t, False)),
        st.binary(max_size=200).map(lambda b: (b, False)),
        # Binary frames holding JSON are read as JSON too.
        not_a_ping.map(lambda v: (orjson.dumps(v), False)),
        _dumps_strategy(
            st.builds(lambda e: {"event": e}, _nasty_text.filter(lambda e: e != "ping"))
        ),
        _dumps_strategy(_huge(limit).map(lambda s: {"event": s})),
        _dumps_strategy(_huge(limit).map(lambda s: {"event": "ping", "user_id": s})),
    )


def _ping() -> st.SearchStrategy[Sent]:
    pings = st.sampled_from([{"event": "ping"}, {"event": "ping", "user_id": USER}])
    return pings.map(lambda v: (_encode(v), True))


def _room_frames(limit: int) -> st.SearchStrategy[Sent]:
    rooms = st.sampled_from([ROOM, "room_city_welcome", "room_city_nosuch"]) | _nasty_text
    valid = st.one_of(
        st.builds(lambda r: {"event": "room.join", "room_id": r}, rooms),
        st.builds(lambda r: {"event": "room.leave", "room_id": r}, rooms),
        st.builds(
            lambda r, b, c: (
                {"event": "room.message.send", "room_id": r, "body": b}
                | ({} if c is None else {"client_msg_id": c})
            ),
            st.just(ROOM) | rooms,
            _nasty_text | _huge(limit),
            st.none() | _nasty_text,
        ),
        st.just({"event": "room.typing", "room_id": ROOM, "typing": True}),
    )
    return st.one_of(
        _ping(),
        _dumps_strategy(valid),
        _dumps_strategy(valid.flatmap(_with_wrong_types)),
        _common_junk(limit),
    )


def _presence_frames(limit: int) -> st.SearchStrategy[Sent]:
    statuses = st.sampled_from(["online", "away", "unavailable", "offline"]) | _nasty_text
    valid = st.fixed_dictionaries(
        {"event": st.just("presence.heartbeat")},
        optional={
            "user_id": st.just(USER),
            "status": statuses,
            "last_active_ago": st.integers(min_value=0, max_value=2**63 - 1),
            "device_id": st.sampled_from(["tab-1", "tab-2"]) | _nasty_text,
        },
    )
    return st.one_of(
        _ping(),
        _dumps_strategy(valid),
        _dumps_strategy(valid.flatmap(_with_wrong_types)),
        _common_junk(limit),
    )


# --- the run ----------------------------------------------------------------------------


def _check_frame(raw: Frame) -> dict[str, Any]:
    frame = orjson.loads(raw)
    assert isinstance(frame, dict), f"server frame is not an object: {raw!r:.300}"
    assert isinstance(frame.get("event"), str), f"server frame without event: {raw!r:.300}"
    if frame["event"] == "error":
        code, message = frame.get("code"), frame.get("message")
        assert isinstance(code, str) and code, f"error frame without code: {frame}"
        assert isinstance(message, str), f"error frame without message: {frame}"
        assert code != "unavailable", f"the server failed on a frame: {frame}"
    return frame


def _answers(ws: ClientConnection, pongs: int) -> list[dict[str, Any]]:
    """Read (and check) frames until `pongs` pongs arrived."""
    frames: list[dict[str, Any]] = []
    while pongs:
        try:
            raw = ws.recv(timeout=RECV_TIMEOUT)
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else None
            reason = exc.rcvd.reason if exc.rcvd is not None else ""
            assert code in DOCUMENTED_CLOSE_CODES, (
                f"socket dropped without a documented close code ({code})"
            )
            raise AssertionError(f"socket closed ({code} {reason!r}) after {frames[-5:]}") from None
        except TimeoutError:
            raise AssertionError(f"no pong within {RECV_TIMEOUT}s; got {frames[-5:]}") from None
        frame = _check_frame(raw)
        frames.append(frame)
        if frame["event"] == "pong":
            pongs -= 1
    return frames


def _fuzz(url: str, frames: st.SearchStrategy[Sent]) -> None:
    """Runs in a worker thread (blocking client); the gateway serves on the loop."""

    @fuzz_run(EXAMPLES)
    @given(sequence=st.lists(frames, min_size=1, max_size=8))
    def run(sequence: list[Sent]) -> None:
        with connect(url, open_timeout=RECV_TIMEOUT, close_timeout=5, max_size=None) as ws:
            for raw, _ in sequence:
                ws.send(raw)
            ws.send(_encode({"event": "ping"}))
            try:
                _answers(ws, 1 + sum(is_ping for _, is_ping in sequence))
            except AssertionError as exc:
                sent = [raw if len(raw) < 300 else raw[:300] for raw, _ in sequence]
                raise AssertionError(f"{exc}\nframes sent (cut at 300): {sent!r}") from None

    run()


async def _run(
    gw: InProcessGateway, path: str, frames: Callable[[int], st.SearchStrategy[Sent]]
) -> None:
    token = mint_token(JWT_SECRET, USER, "WS Fuzz", 3600)
    url = f"{gw.ws_url}{path}?token={token}"
    strategy = frames(gw.settings.ws_max_frame_bytes)
    await fuzz_logged(_fuzz, url, strategy)


@pytest.mark.timeout(300)
async def test_fuzz_room_socket(gateway: InProcessGateway) -> None:
    await _run(gateway, f"/ws/city/rooms/{ROOM}", _room_frames)


@pytest.mark.timeout(300)
async def test_fuzz_presence_socket(gateway: InProcessGateway) -> None:
    await _run(gateway, "/ws/city/presence", _presence_frames)


@pytest.mark.parametrize("path", [f"/ws/city/rooms/{ROOM}", "/ws/city/presence"])
async def test_frame_over_the_limit_closes_1009(gateway_factory: GatewayFactory, path: str) -> None:
    """The one frame that may end a socket: over WS_MAX_FRAME_BYTES, with 1009."""
    gw = await gateway_factory(ws_max_frame_bytes=4096)
    token = mint_token(JWT_SECRET, USER, None, 3600)

    def oversized() -> int | None:
        with connect(f"{gw.ws_url}{path}?token={token}", open_timeout=RECV_TIMEOUT) as ws:
            ws.send(_encode({"event": "ping", "pad": "x" * 5000}))
            try:
                while True:
                    ws.recv(timeout=RECV_TIMEOUT)
            except ConnectionClosed as exc:
                return exc.rcvd.code if exc.rcvd is not None else None

    assert await asyncio.to_thread(oversized) == 1009
