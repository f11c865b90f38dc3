"""Ghost names: reversible escaping of city ids into Matrix localparts."""

from __future__ import annotations

import pytest

from bridge.naming import Names, escape_localpart, unescape_localpart
from bridge.render import message_body

NAMES = Names(
    server_name="city.test",
    ghost_prefix="city_",
    bot_localpart="citybot",
    secondme_localpart="secondme",
    secondme_agent_id="ag_secondme_global",
)


@pytest.mark.parametrize(
    ("city_id", "ghost"),
    [
        ("u_123", "@city_u_123:city.test"),
        ("u_AbC", "@city_u_=41b=43:city.test"),
        ("u_a=b", "@city_u_a=3db:city.test"),
        ("u_x.y-z", "@city_u_x.y-z:city.test"),
        ("ag_helper", "@city_ag_helper:city.test"),
    ],
)
def test_ghosts_round_trip(city_id: str, ghost: str) -> None:
    assert NAMES.ghost_for(city_id) == ghost
    assert NAMES.city_id_of_ghost(ghost) == city_id


@pytest.mark.parametrize(
    "not_ours",
    [
        "@city_U1:city.test",  # upper case is not our spelling
        "@city_u_=4:city.test",  # broken escape
        "@city_u_=61:city.test",  # 'a' escaped: not canonical
        "@city_x:city.test",  # not a city id
        "@city_u_1:other.test",
        "@alice:city.test",
        "city_u_1",
    ],
)
def test_foreign_ids_are_not_ghosts(not_ours: str) -> None:
    assert NAMES.city_id_of_ghost(not_ours) is None


def test_every_string_escapes_to_a_legal_localpart_and_back() -> None:
    for value in ("u_ÜnÏcödé", "u_ ", "u_/slash", "u_=3d", "u_😀"):
        escaped = escape_localpart(value)
        assert all(c in "abcdefghijklmnopqrstuvwxyz0123456789._=-/" for c in escaped)
        assert unescape_localpart(escaped) == value


def test_our_namespace_and_authors() -> None:
    assert NAMES.is_ours("@citybot:city.test") and NAMES.is_ours("@secondme:city.test")
    assert NAMES.is_ours("@city_u_1:city.test")
    assert not NAMES.is_ours("@alice:city.test") and not NAMES.is_ours("@citybot:other.test")
    assert NAMES.author_user_id(None, "ag_secondme_global") == "@secondme:city.test"
    assert NAMES.author_user_id("u_1", None) == "@city_u_1:city.test"
    assert NAMES.city_room_of_alias("#city_general:city.test") == "room_city_general"
    assert NAMES.city_room_of_alias("#city_X:city.test") is None
    assert NAMES.alias_for("room_city_general") == "#city_general:city.test"


def test_rendering_limits_and_fallbacks() -> None:
    assert message_body({"msgtype": "m.text", "body": "x" * 50}, 10) == "x" * 9 + "…"
    assert message_body({"msgtype": "m.text", "body": "   "}, 10) is None
    assert message_body({"msgtype": "m.text"}, 10) is None
    assert message_body({"msgtype": "m.location", "body": "here"}, 10) == "here"
