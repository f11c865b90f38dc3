"""`@secondme:S` on a public homeserver (issue 9, items 6 and 11; SPEC §12).

Real Synapse, matrix-nio users, the fake Agents Core HTTP server.

- Invites: at most LIMIT_SECONDME_INVITES_PER_HOUR accepted per inviting user (the
  rest rejected), and only to direct chats (or bridged rooms).
- Mentions in shared rooms (a bridged city room; a DM that someone else joined) get
  the room's messages as context, never the asker's private Second Me history.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
import nio

from tests.bridge.conftest import BridgeEnv, Element, MakeElement, PortGateway, StartBridged
from tests.bridge.test_secondme_matrix import from_secondme, open_dm, reply_to
from tests.conftest import SECURITY_DEFAULTS
from tests.fake_agents_core import FakeAgentsCore
from tests.secondme_fixtures import (
    SECRET,
    fake_agents_core,  # noqa: F401 (the `fake` fixture)
    secondme_settings,
)
from tests.servers import wait_until


def settings(fake: FakeAgentsCore) -> dict[str, Any]:
    return {**SECURITY_DEFAULTS, **secondme_settings(fake)}


async def membership(env: BridgeEnv, user: Element, room_id: str, member: str) -> str | None:
    """`member`'s membership in the room, read from the room's state as `user`."""
    async with httpx.AsyncClient(base_url=env.hs.base_url, timeout=30) as http:
        resp = await http.get(
            f"/_matrix/client/v3/rooms/{quote(room_id)}/state/m.room.member/{quote(member)}",
            headers={"Authorization": f"Bearer {user.client.access_token}"},
        )
    if resp.status_code == 404:
        return None
    assert resp.status_code == 200, resp.text
    value = resp.json().get("membership")
    return value if isinstance(value, str) else None


async def invite_secondme(env: BridgeEnv, user: Element, *, direct: bool = True) -> str:
    created = await user.client.room_create(is_direct=direct, invite=[env.user_id("secondme")])
    assert isinstance(created, nio.RoomCreateResponse), created
    room_id: str = created.room_id
    return room_id


async def answered_invites(env: BridgeEnv, user: Element, rooms: list[str]) -> dict[str, str]:
    """Wait until Second Me joined or rejected every invite; room → join | leave."""
    secondme = env.user_id("secondme")

    async def settled() -> dict[str, str] | None:
        states = {r: await membership(env, user, r, secondme) for r in rooms}
        if all(s in ("join", "leave") for s in states.values()):
            return {r: str(s) for r, s in states.items()}
        return None

    result: dict[str, str] = await wait_until(settled, timeout=60, interval=0.2)
    return result


# --- invites (item 6) ------------------------------------------------------------------


async def test_invites_are_capped_per_inviter_and_only_direct_chats_are_joined(
    start_bridged: StartBridged,
    bridge_env: BridgeEnv,
    element: MakeElement,
    fake: FakeAgentsCore,
) -> None:
    await start_bridged(**settings(fake))
    cap = SECURITY_DEFAULTS["limit_secondme_invites_per_hour"]
    alice = await element()

    rooms = [await invite_secondme(bridge_env, alice) for _ in range(cap + 2)]
    states = await answered_invites(bridge_env, alice, rooms)

    assert list(states.values()).count("join") == cap, states
    assert list(states.values()).count("leave") == 2, states

    # The cap is per inviter: Bob is not affected by Alice. A room that is not a
    # direct chat is rejected and does not use up Bob's budget.
    bob = await element()
    group = await invite_secondme(bridge_env, bob, direct=False)
    dms = [await invite_secondme(bridge_env, bob) for _ in range(cap)]
    bob_states = await answered_invites(bridge_env, bob, [group, *dms])
    assert bob_states[group] == "leave"
    assert [bob_states[r] for r in dms] == ["join"] * cap


# --- context in shared rooms (item 11) ---------------------------------------------------


PRIVATE = [("user", SECRET), ("assistant", f"echo: {SECRET}")]


async def private_history(gw: PortGateway, user_id: str) -> list[tuple[str, str]]:
    service = gw.runtime.secondme
    return [(m.role, m.content) for m in await service.get_last_messages(user_id, 50)]


async def private_exchange(env: BridgeEnv, gw: PortGateway, alice: Element) -> None:
    """Alice tells Second Me a secret in a DM (her private history)."""
    dm = await open_dm(alice, env)
    _, reply = await reply_to(env, alice, dm, SECRET)
    assert reply["content"]["body"] == f"echo: {SECRET}"

    # The answer is stored right after it is sent to Matrix (where Alice saw it).
    async def stored() -> bool:
        return await private_history(gw, alice.user_id) == PRIVATE

    await wait_until(stored)


async def test_mention_in_a_bridged_room_gets_the_rooms_messages_as_context(
    start_bridged: StartBridged,
    bridge_env: BridgeEnv,
    element: MakeElement,
    fake: FakeAgentsCore,
    db: asyncpg.Connection,
) -> None:
    gw = await start_bridged(**settings(fake))
    alice = await element()
    await private_exchange(bridge_env, gw, alice)

    general = await alice.join(bridge_env.alias("general"))
    await alice.send(general, "the market opens at nine")

    async def stored() -> bool:
        count = await db.fetchval(
            "select count(*) from city_room_messages where author_matrix_id = $1", alice.user_id
        )
        return bool(count == 1)

    await wait_until(stored, timeout=20)
    await gw.http.post(
        "/city/rooms/room_city_general/messages",
        json={"body": "and closes at six"},
        headers=gw.auth("u_7"),
    )
    # #city_general outlives the test (one Synapse per session): wait for this answer.
    await alice.send(general, "@secondme what did I tell you?")
    await alice.wait_for_message(
        general,
        lambda e: (
            e["sender"] == bridge_env.user_id("secondme")
            and e["content"].get("body") == "echo: what did I tell you?"
        ),
        timeout=20,
    )
    request = fake.requests[-1].body
    assert request["input"] == "what did I tell you?"
    assert request["context"]["history"] == [
        {"role": "user", "content": f"{alice.user_id}: the market opens at nine"},
        {"role": "user", "content": "u_7: and closes at six"},
    ]
    assert SECRET not in json.dumps(request)
    # ...and the public exchange did not go into Alice's private history.
    assert await private_history(gw, alice.user_id) == PRIVATE


async def test_mention_in_a_dm_that_became_a_group_gets_the_rooms_messages(
    start_bridged: StartBridged,
    bridge_env: BridgeEnv,
    element: MakeElement,
    fake: FakeAgentsCore,
    db: asyncpg.Connection,
) -> None:
    gw = await start_bridged(**settings(fake))
    alice, bob = await element(), await element()
    await private_exchange(bridge_env, gw, alice)

    # A second direct chat with Second Me, then Bob is invited: now three read it.
    room = await open_dm(alice, bridge_env)
    invited = await alice.client.room_invite(room, bob.user_id)
    assert isinstance(invited, nio.RoomInviteResponse), invited
    await bob.join(room)
    await bob.send(room, "hi, bob here")
    _, reply = await reply_to(bridge_env, alice, room, "@secondme what do you know?")

    assert reply["content"]["body"] == "echo: what do you know?"
    request = fake.requests[-1].body
    assert request["context"]["history"] == [
        {"role": "user", "content": f"{bob.user_id}: hi, bob here"},
    ]
    assert SECRET not in json.dumps(request)

    # The claim closes right after the send to Matrix (where Alice saw the reply).
    async def closed() -> tuple[str, str] | None:
        claim = await db.fetchrow(
            "select kind, state from secondme_replies where requester_id = $1"
            " order by created_at desc limit 1",
            alice.user_id,
        )
        return (claim["kind"], claim["state"]) if claim["state"] != "pending" else None

    assert await wait_until(closed) == ("matrix_room", "answered")
    assert await private_history(gw, alice.user_id) == PRIVATE
    # Bob's message did not mention Second Me: one reply in the room, to Alice.
    await alice.sync()
    assert len(from_secondme(bridge_env, alice, room)) == 1
