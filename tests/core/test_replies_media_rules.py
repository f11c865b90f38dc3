"""The pure rules of replies and media (no service involved): mxc parsing, bodies,
the reply fallback both ways, and the streaming size cut-off."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from bridge import render, replies
from gateway.core.media import MediaService, MediaTooLarge, attachment_from_content, parse_mxc
from gateway.core.models import Message


@pytest.mark.parametrize(
    ("url", "parts"),
    [
        ("mxc://example.org/AbC_-9", ("example.org", "AbC_-9")),
        ("mxc://[::1]:8448/x", ("[::1]:8448", "x")),
        ("mxc://example.org/../etc", None),
        ("mxc://exa mple.org/x", None),
        ("mxc://example.org/", None),
        ("https://example.org/x", None),
        (5, None),
    ],
)
def test_only_well_formed_mxc_uris_are_accepted(url: object, parts: object) -> None:
    assert parse_mxc(url) == parts


def test_media_body_is_the_caption_else_the_file_name() -> None:
    image = {"msgtype": "m.image", "body": "cat.png", "url": "mxc://s/a"}
    assert render.message_body(image, 4000) == "cat.png"
    captioned = {**image, "body": "my cat", "filename": "cat.png"}
    assert render.message_body(captioned, 4000) == "my cat"
    attachment = attachment_from_content(captioned)
    assert attachment is not None and attachment.name == "cat.png"
    assert attachment.as_json()["url"] == "/city/media/s/a"
    encrypted = {"msgtype": "m.file", "body": "x.pdf", "file": {"url": "mxc://s/a"}}
    assert attachment_from_content(encrypted) is None
    assert "not available" in (render.message_body(encrypted, 4000) or "")


def test_reply_fallback_is_removed_only_from_replies_of_that_shape() -> None:
    reply = {"m.relates_to": {"m.in_reply_to": {"event_id": "$e"}}, "msgtype": "m.text"}
    body = "> <@a:s> first\n> second\n>\n> third\n\nanswer\n> my own quote"
    assert render.message_body({**reply, "body": body}, 4000) == "answer\n> my own quote"
    # Not a reply, or a quote that is not a fallback: kept.
    assert render.message_body({"msgtype": "m.text", "body": body}, 4000) == body
    quote = "> to be or not\n\nthat is it"
    assert render.message_body({**reply, "body": quote}, 4000) == quote


def test_city_reply_carries_relation_fallback_and_mention() -> None:
    original = Message(
        id="m_1",
        room_id="r",
        author_user_id=None,
        author_agent_id=None,
        author_matrix_id="@a:s",
        body="one <b>\ntwo",
        created_at=datetime.now(UTC),
        seq=1,
    )
    content = replies.with_reply(
        {"msgtype": "m.text", "body": "yes & no"},
        matrix_room_id="!r:s",
        original=original,
        original_event_id="$e",
        original_sender="@a:s",
        mention=True,
    )
    assert content["body"] == "> <@a:s> one <b>\n> two\n\nyes & no"
    assert content["formatted_body"].endswith(
        "one &lt;b&gt;<br />two</blockquote></mx-reply>yes &amp; no"
    )
    assert content["m.relates_to"] == {"m.in_reply_to": {"event_id": "$e"}}
    assert content["m.mentions"] == {"user_ids": ["@a:s"]}
    # What comes back from Matrix is the reply alone.
    assert render.message_body(content, 4000) == "yes & no"


class _Download:
    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks
        self.closed = False
        self.content_type = None
        self.content_length = None

    async def chunks(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk

    async def aclose(self) -> None:
        self.closed = True


async def test_a_stream_growing_past_the_limit_is_cut_off_and_closed() -> None:
    media = MediaService(None, None, max_bytes=10)  # type: ignore[arg-type]
    fits = _Download([b"12345", b"67890"])
    assert [c async for c in media.limited(fits)] == [b"12345", b"67890"]
    assert fits.closed
    grows = _Download([b"12345", b"67890", b"!"])
    got: list[bytes] = []
    with pytest.raises(MediaTooLarge):
        async for chunk in media.limited(grows):
            got.append(chunk)
    assert got == [b"12345", b"67890"] and grows.closed
