"""The repository's own contract: docs/api.md, docs/asyncapi.yaml, the OpenAPI document.

- docs/asyncapi.yaml is an AsyncAPI 3.0 document whose references resolve, whose
  payloads are valid JSON Schema, and which describes the frames the gateway really
  sends (built by its own frame builders) and accepts (its own frame models);
- docs/api.md names every documented REST route and every frame;
- nothing in README.md or docs/ points outside the repository.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
import yaml

from gateway.app.main import create_app
from gateway.core.models import Message, ReactionChange, ReactionSummary
from gateway.core.presence.answers import update_frame
from gateway.http.schemas import TEXT_PATTERN
from gateway.realtime import wsproto
from gateway.realtime.ws_presence import HeartbeatFrame
from tests.conftest import make_settings

REPO = Path(__file__).resolve().parents[2]
ASYNCAPI = REPO / "docs" / "asyncapi.yaml"
API_MD = REPO / "docs" / "api.md"


@pytest.fixture(scope="module")
def asyncapi() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(ASYNCAPI.read_text())
    return document


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def _validator(document: dict[str, Any], message: str) -> jsonschema.Draft202012Validator:
    """A validator for one message's payload, its `$ref`s resolved in the document."""
    payload = document["components"]["messages"][message]["payload"]
    schema = {**payload, "components": document["components"]}
    return jsonschema.Draft202012Validator(schema)


def test_asyncapi_document_is_well_formed(asyncapi: dict[str, Any]) -> None:
    assert asyncapi["asyncapi"] == "3.0.0"
    assert {"title", "version"} <= set(asyncapi["info"])
    for ref in _refs(asyncapi):
        _resolve(asyncapi, ref)  # every reference resolves
    for schema in asyncapi["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)
    channels = asyncapi["channels"]
    assert {c["address"].split("?")[0] for c in channels.values()} == {
        "/ws/city/rooms/{room_id}",
        "/ws/city/presence",
    }
    for channel in channels.values():
        for parameter in re.findall(r"{(\w+)}", channel["address"]):
            assert parameter in channel["parameters"], (channel["address"], parameter)
    for name, operation in asyncapi["operations"].items():
        assert operation["action"] in ("send", "receive"), name
        channel = _resolve(asyncapi, operation["channel"]["$ref"])
        for message in operation["messages"]:
            # An operation's messages are its channel's (AsyncAPI 3.0).
            assert message["$ref"].startswith(operation["channel"]["$ref"] + "/messages/")
            assert message["$ref"].rsplit("/", 1)[1] in channel["messages"]


def _message() -> Message:
    return Message(
        id="m_city_01J00000000000000000000000",
        room_id="room_city_general",
        author_user_id="u_1",
        author_agent_id=None,
        author_matrix_id=None,
        body="Привіт",
        created_at=datetime.now(UTC),
        seq=1,
        edited_at=datetime.now(UTC),
        reactions=(ReactionSummary("👍", 2), ReactionSummary("ok", 1)),
    )


def test_server_frames_match_the_document(asyncapi: dict[str, Any]) -> None:
    """What the gateway's own frame builders write is what the document describes."""
    message = _message()
    sent = {
        "roomMessage": wsproto.room_message_frame(message),
        "roomMessageEdited": wsproto.room_message_edited_frame(message),
        "roomMessageDeleted": wsproto.room_message_deleted_frame(message.room_id, message.id),
        "roomReaction": wsproto.room_reaction_frame(
            ReactionChange("room_city_general", message.id, "👍", 2, True, user_id="u_1")
        ),
        "roomJoin": wsproto.room_join_frame("room_city_general", "u_1"),
        "roomLeave": wsproto.room_leave_frame("room_city_general", "u_1"),
        "roomPresence": wsproto.room_presence_frame("room_city_general", "u_1", "away"),
        "roomTyping": wsproto.room_typing_frame("room_city_general", True, user_id="u_1"),
        "pong": wsproto.PONG_FRAME,
        "error": wsproto.error_frame("not_in_room", "join first"),
        "presenceUpdate": update_frame("u_1", "online", 1200),
    }
    matrix_side = [
        ("roomPresence", wsproto.matrix_presence_frame("room_city_general", "@a:s", "unavailable")),
        (
            "roomTyping",
            wsproto.room_typing_frame("room_city_general", False, matrix_user_id="@a:s"),
        ),
        (
            "roomReaction",
            wsproto.room_reaction_frame(
                ReactionChange(
                    "room_city_general", "m_city_1", "🎉", 0, False, matrix_user_id="@a:s"
                )
            ),
        ),
    ]
    for name, frame in [*sent.items(), *matrix_side]:
        value = orjson.loads(frame)
        _validator(asyncapi, name).validate(value)
        assert asyncapi["components"]["messages"][name]["name"] == value["event"]


# Frames the server accepts, and ones it refuses (with an `error` frame).
_CLIENT_FRAMES = [
    ("roomJoinRequest", {"event": "room.join", "room_id": "room_city_welcome"}),
    ("roomLeaveRequest", {"event": "room.leave", "room_id": "room_city_welcome"}),
    (
        "roomMessageSend",
        {"event": "room.message.send", "room_id": "r", "body": "hi", "client_msg_id": "c-1"},
    ),
    ("roomMessageSend", {"event": "room.message.send", "room_id": "r", "body": "hi"}),
    ("ping", {"event": "ping"}),
    ("roomTypingRequest", {"event": "room.typing", "room_id": "r", "typing": True}),
    ("roomTypingRequest", {"event": "room.typing", "room_id": "r", "typing": "yes"}),
    ("roomTypingRequest", {"event": "room.typing", "room_id": "r"}),
    ("roomJoinRequest", {"event": "room.join", "room_id": 5}),
    ("roomJoinRequest", {"event": "room.join"}),
    ("roomMessageSend", {"event": "room.message.send", "room_id": "r"}),
    ("roomMessageSend", {"event": "room.message.send", "room_id": "r", "body": 1}),
    ("roomJoinRequest", {"event": "room.join", "room_id": ""}),
]
_HEARTBEATS = [
    {"event": "presence.heartbeat"},
    {"event": "presence.heartbeat", "status": "away", "last_active_ago": 5, "device_id": "t"},
    {"event": "presence.heartbeat", "status": "unavailable", "user_id": "u_1"},
    {"event": "presence.heartbeat", "status": "asleep"},
    {"event": "presence.heartbeat", "last_active_ago": -1},
    {"event": "presence.heartbeat", "last_active_ago": "5"},
    {"event": "presence.heartbeat", "device_id": ""},
]


@pytest.mark.parametrize(("name", "frame"), _CLIENT_FRAMES)
def test_room_client_frames_match_the_document(
    asyncapi: dict[str, Any], name: str, frame: dict[str, Any]
) -> None:
    """The document accepts exactly the room frames the gateway accepts."""
    try:
        wsproto.parse_room_frame(orjson.dumps(frame))
        accepted = True
    except wsproto.FrameError:
        accepted = False
    assert _validator(asyncapi, name).is_valid(frame) == accepted, frame


@pytest.mark.parametrize("frame", _HEARTBEATS)
def test_presence_frames_match_the_document(
    asyncapi: dict[str, Any], frame: dict[str, Any]
) -> None:
    try:
        HeartbeatFrame.model_validate(frame)
        accepted = True
    except ValueError:
        accepted = False
    assert _validator(asyncapi, "presenceHeartbeat").is_valid(frame) == accepted, frame


def test_api_md_covers_the_contract(asyncapi: dict[str, Any]) -> None:
    """docs/api.md names every documented route and every frame."""
    text = API_MD.read_text()
    paths = create_app(make_settings()).openapi()["paths"]
    for path, item in paths.items():
        for method in item:
            assert f"{method.upper()} {path}" in text, f"{method.upper()} {path}"
    for message in asyncapi["components"]["messages"].values():
        assert re.search(rf"`{re.escape(message['name'])}[` ]", text), message["name"]
    for close_code in ("4401", "4404", "4429", "1013"):
        assert close_code in text


def test_docs_stay_inside_the_repository() -> None:
    """A clone has no ../shared/: README and docs link only to what the repository has."""
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = page.read_text()
        assert "shared/" not in text, f"{page.name} mentions shared/"
        assert "SPEC" not in text, f"{page.name} refers to a SPEC the clone does not have"
        for target in re.findall(r"\]\(([^)#\s]+)", text):
            if re.match(r"^[a-z]+:", target):
                continue  # a URL
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def test_text_pattern_is_what_the_core_accepts() -> None:
    """The documented text pattern (no NUL, not blank) agrees with str.strip()."""
    pattern = re.compile(TEXT_PATTERN)
    for code in range(0x110000):
        c = chr(code)
        assert (pattern.match(c) is not None) == (c != "\x00" and bool(c.strip())), hex(code)
