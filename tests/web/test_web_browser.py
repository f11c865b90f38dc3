"""The City web app in a real browser (headless Debian Chromium driven by Playwright).

SPEC §14: opening the app makes the user online within 2 s; 5 idle minutes (the page's
clock) make them away and a key press brings them back; closing the tab takes them
offline within the grace (the beacon); with two tabs, closing one keeps them online;
a message typed in the app reaches an Element user and their reply appears in the app;
Second Me answers in the app. SPEC §13 in the room: typing both ways (a second tab, and
Element), reactions, replies, edits and deletes seen live by a second user's tab, an
Element reply shown as a reply, and the members panel listing the Element user. Screenshots of the main screens go to
`test-artifacts/web/` (gitignored).

Needs /usr/bin/chromium (`apt-get install chromium`) and the built app
(`cd web && npm run build`); `make test` provides both and sets CITY_WEB_TESTS=required,
so there a missing piece fails instead of skipping.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.http.webapp import web_dist
from tests.bridge import conftest as bridge_fixtures
from tests.bridge.conftest import BridgeEnv, MakeElement, PortGateway, city_body
from tests.bridge.test_typing_members import TypingView
from tests.conftest import GatewayFactory
from tests.fake_agents_core import FakeAgentsCore
from tests.servers import Gateway, wait_until

CHROMIUM = os.environ.get("CITY_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Long enough that only the beacon, never the TTL, can explain a quick offline.
SLOW_TTL = {"presence_ttl_seconds": 300, "presence_offline_grace_seconds": 2}


def _missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} not found (apt-get install chromium)"
    if not (web_dist() / "index.html").is_file():
        return f"the web app is not built in {web_dist()} (cd web && npm ci && npm run build)"
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "the Python playwright package is missing (pip install -e '.[dev]')"
    return None


# The Synapse fixtures of tests/bridge, for the one Matrix test here.
bridge_env = bridge_fixtures.bridge_env
start_bridged = bridge_fixtures.start_bridged
bridged = bridge_fixtures.bridged
element = bridge_fixtures.element

_WHY = _missing()
if _WHY and os.environ.get("CITY_WEB_TESTS") == "required":
    raise RuntimeError(f"browser tests required but cannot run: {_WHY}")
pytestmark = pytest.mark.skipif(_WHY is not None, reason=_WHY or "")

if _WHY is None:
    from playwright.async_api import (
        Browser,
        BrowserContext,
        Locator,
        Page,
        async_playwright,
        expect,
    )


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        instance = await pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield instance
        await instance.close()


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    ctx = await browser.new_context(viewport={"width": 1100, "height": 800})
    yield ctx
    await ctx.close()


async def status_of(gw: Gateway, user_id: str) -> str:
    resp = await gw.http.get("/city/presence", params={"user_id": user_id})
    assert resp.status_code == 200, resp.text
    return str(resp.json()["users"][0]["status"])


async def open_app(
    ctx: BrowserContext, gw: Gateway, user_id: str, route: str = "/", name: str = "Web User"
) -> Page:
    page = await ctx.new_page()
    await page.goto(f"{gw.base_url}/app/#token={gw.token(user_id, name)}")
    if route != "/":
        await page.evaluate("route => { window.location.hash = route }", f"#{route}")
    return page


async def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def new_user() -> str:
    return f"u_web{secrets.token_hex(3)}"


async def test_opening_the_app_makes_the_user_online_at_once(
    gateway_factory: GatewayFactory, context: BrowserContext
) -> None:
    """SPEC §14's "online within 2 s of opening", as a property rather than a timing:
    with the page's clock paused, no timer can ever fire, so the user can only come
    online if the app sends its first heartbeat as it starts (page load plus one
    request; the time itself is the machine's, not something to assert here)."""
    gw = await gateway_factory()
    user = new_user()
    page = await context.new_page()
    await page.clock.install()
    await page.clock.pause_at(datetime.now(UTC))
    await page.goto(f"{gw.base_url}/app/#token={gw.token(user, 'Web User')}")
    await wait_until(lambda: _is(gw, user, "online"), timeout=15)
    await page.clock.resume()
    # The token moved from the address bar to the tab's sessionStorage.
    assert "token=" not in page.url
    assert await page.evaluate("sessionStorage.getItem('daarion.city.token')")
    await expect(page.get_by_test_id("presence-status")).to_have_text("online")
    await expect(page.get_by_test_id("stats")).to_contain_text("Rooms")
    await shot(page, "city-home")
    await page.evaluate("window.location.hash = '#/rooms'")
    await expect(page.get_by_test_id("rooms")).to_contain_text("General")
    await shot(page, "rooms")


async def _is(gw: Gateway, user: str, status: str) -> bool:
    return await status_of(gw, user) == status


async def test_five_idle_minutes_make_away_and_a_key_press_online(
    gateway_factory: GatewayFactory, context: BrowserContext
) -> None:
    gw = await gateway_factory()
    user = new_user()
    page = await context.new_page()
    await page.clock.install()
    await page.goto(f"{gw.base_url}/app/#token={gw.token(user)}")
    await wait_until(lambda: _is(gw, user, "online"), timeout=10)

    await page.clock.fast_forward("05:01")
    await wait_until(lambda: _is(gw, user, "away"), timeout=10)
    await expect(page.get_by_test_id("presence-status")).to_have_text("away")

    await page.keyboard.press("Shift")
    await wait_until(lambda: _is(gw, user, "online"), timeout=10)
    await expect(page.get_by_test_id("presence-status")).to_have_text("online")


async def test_closing_the_tab_takes_the_user_offline_by_beacon(
    gateway_factory: GatewayFactory, context: BrowserContext
) -> None:
    gw = await gateway_factory(**SLOW_TTL)
    user = new_user()
    page = await open_app(context, gw, user)
    await wait_until(lambda: _is(gw, user, "online"), timeout=10)
    await page.close(run_before_unload=True)
    # The TTL is 300 s: offline within the grace (+ margin) can only be the beacon.
    grace = gw.settings.presence_offline_grace_seconds
    await wait_until(lambda: _is(gw, user, "offline"), timeout=grace + 5)


async def test_two_tabs_closing_one_keeps_the_user_online(
    gateway_factory: GatewayFactory, context: BrowserContext
) -> None:
    gw = await gateway_factory(**SLOW_TTL)
    user = new_user()
    first = await open_app(context, gw, user)
    second = await open_app(context, gw, user)
    await wait_until(lambda: _is(gw, user, "online"), timeout=10)
    device = "sessionStorage.getItem('daarion.city.presence.device_id')"
    first_device, second_device = await first.evaluate(device), await second.evaluate(device)
    assert first_device and second_device and first_device != second_device

    await first.close(run_before_unload=True)
    # Observed for longer than the grace: the other tab keeps the user online.
    grace = gw.settings.presence_offline_grace_seconds
    deadline = time.monotonic() + grace + 2
    while time.monotonic() < deadline:
        assert await status_of(gw, user) == "online"
        await second.wait_for_timeout(200)
    # And the closed tab did say offline: closing the last one now is quick.
    await second.close(run_before_unload=True)
    await wait_until(lambda: _is(gw, user, "offline"), timeout=grace + 5)


async def test_second_me_answers_in_the_app(
    gateway_factory: GatewayFactory, context: BrowserContext
) -> None:
    with FakeAgentsCore() as fake:
        gw = await gateway_factory(agents_core_url=fake.url, agents_core_timeout=5)
        page = await open_app(context, gw, new_user(), "/secondme")
        question = f"what is new {secrets.token_hex(3)}?"
        await page.get_by_label("Ask Second Me").fill(question)
        await page.get_by_role("button", name="Ask").click()
        history = page.get_by_test_id("secondme-history")
        await expect(history).to_contain_text(f"echo: {question}", timeout=10_000)
        await shot(page, "second-me")

        fake.set_mode("error500")
        await page.get_by_label("Ask Second Me").fill("and now?")
        await page.get_by_role("button", name="Ask").click()
        await expect(page.get_by_test_id("secondme-error")).to_contain_text(
            "agent service failed", timeout=10_000
        )


def message_item(page: Page, text: str) -> Locator:
    """The message whose own text (not a quote of it) contains `text`."""
    return page.locator("li.city-chat__message").filter(
        has=page.locator("p.city-chat__text", has_text=text)
    )


async def test_typing_reactions_replies_edits_and_deletes_reach_a_second_users_tab(
    gateway_factory: GatewayFactory, context: BrowserContext
) -> None:
    gw = await gateway_factory()
    ann, bob = new_user(), new_user()
    room = "/rooms/room_city_general"
    a = await open_app(context, gw, ann, room, name="Ann Web")
    b = await open_app(context, gw, bob, room, name="Bob Web")
    for page in (a, b):
        await expect(page.get_by_test_id("connection")).to_have_text("live", timeout=10_000)
    # Members: both city users, with presence, from GET …/members and room.join frames.
    await expect(b.get_by_test_id("members").locator(f'[data-member="{ann}"]')).to_contain_text(
        "Ann Web", timeout=10_000
    )
    await expect(a.get_by_test_id("members").locator(f'[data-member="{bob}"]')).to_contain_text(
        "online"
    )

    # Typing: Ann types, Bob's tab says so; sending ends it.
    composer = a.get_by_label("Message", exact=True)
    await composer.press_sequentially("hello Bob", delay=20)
    await expect(b.get_by_test_id("typing")).to_have_text("Ann Web is typing…", timeout=10_000)
    await shot(b, "room-typing")
    text = f"a message to react to {secrets.token_hex(3)}"
    await composer.fill(text)
    await composer.press("Enter")
    await expect(b.get_by_test_id("typing")).to_have_text("", timeout=10_000)
    await expect(message_item(b, text)).to_be_visible(timeout=10_000)

    # Reaction: Bob reacts from the picker; Ann's tab sees the count; Ann adds hers.
    mine_in_b = message_item(b, text)
    await mine_in_b.hover()
    await mine_in_b.get_by_role("button", name="React", exact=True).click()
    await mine_in_b.get_by_role("button", name="React thumbs up").click()
    b_thumb = mine_in_b.locator('[data-reaction="👍"]')
    await expect(b_thumb).to_have_attribute("aria-pressed", "true")
    a_thumb = message_item(a, text).locator('[data-reaction="👍"]')
    await expect(a_thumb).to_contain_text("1", timeout=10_000)
    await expect(a_thumb).to_have_attribute("aria-pressed", "false")
    await a_thumb.click()
    await expect(a_thumb).to_contain_text("2")
    await expect(a_thumb).to_have_attribute("aria-pressed", "true")
    await expect(b_thumb).to_contain_text("2", timeout=10_000)
    await expect(b_thumb).to_have_attribute("aria-pressed", "true")
    # Bob takes his back (keyboard: focus and Enter); Ann's tab sees 1, still hers.
    await b_thumb.focus()
    await b_thumb.press("Enter")
    await expect(b_thumb).to_have_attribute("aria-pressed", "false")
    await expect(a_thumb).to_contain_text("1", timeout=10_000)
    await expect(a_thumb).to_have_attribute("aria-pressed", "true")

    # Reply: Bob replies; both tabs show the quoted snippet.
    await mine_in_b.get_by_role("button", name="Reply").click()
    await expect(b.get_by_test_id("replying-to")).to_contain_text(text)
    answer = f"my answer {secrets.token_hex(3)}"
    await b.get_by_label("Message", exact=True).fill(answer)
    await b.get_by_label("Message", exact=True).press("Enter")
    await expect(b.get_by_test_id("replying-to")).to_have_count(0)
    for page in (a, b):
        reply = message_item(page, answer)
        await expect(reply.get_by_test_id("reply-quote")).to_contain_text(text, timeout=10_000)
    resp = await gw.http.get("/city/rooms/room_city_general")
    posted = [m for m in resp.json()["messages"] if m["body"] == answer]
    original = [m for m in resp.json()["messages"] if m["body"] == text]
    assert posted and original and posted[0]["reply_to"] == original[0]["id"]
    await shot(a, "room-reactions-reply")

    # Edit and delete own messages; the other tab follows; no edit/delete on others'.
    await expect(message_item(a, answer).get_by_role("button", name="Edit")).to_have_count(0)
    mine_in_a = message_item(a, text)
    await mine_in_a.hover()
    await mine_in_a.get_by_role("button", name="Edit").click()
    edited = f"{text} (fixed)"
    editor = a.get_by_label("Edit message")  # replaces the text while editing
    await editor.fill(edited)
    await editor.press("Enter")
    await expect(message_item(b, edited)).to_contain_text("(edited)", timeout=10_000)
    # The edit keeps the reactions and who made them.
    await expect(message_item(b, edited).locator('[data-reaction="👍"]')).to_have_attribute(
        "aria-pressed", "false"
    )
    await expect(message_item(a, edited).locator('[data-reaction="👍"]')).to_have_attribute(
        "aria-pressed", "true"
    )
    mine_in_a = message_item(a, edited)
    await mine_in_a.hover()
    await mine_in_a.get_by_role("button", name="Delete").click()
    await mine_in_a.get_by_role("button", name="Yes, delete").click()
    await expect(message_item(b, edited)).to_have_count(0, timeout=10_000)
    await expect(message_item(a, edited)).to_have_count(0)
    # The reply stays, its quote now says the original is gone.
    await expect(message_item(b, answer).get_by_test_id("reply-quote")).to_contain_text(
        "earlier message"
    )

    # Bob leaves: Ann's members panel drops him.
    await b.close()
    await expect(a.get_by_test_id("members").locator(f'[data-member="{bob}"]')).to_have_count(
        0, timeout=10_000
    )


async def test_a_message_from_the_app_reaches_element_and_the_reply_comes_back(
    bridged: PortGateway,
    bridge_env: BridgeEnv,
    element: MakeElement,
    context: BrowserContext,
) -> None:
    alice = await element()
    matrix_room = await alice.join(bridge_env.alias("general"))
    user = new_user()
    page = await open_app(context, bridged, user, "/rooms/room_city_general")
    await expect(page.get_by_test_id("connection")).to_have_text("live", timeout=10_000)

    text = f"hello Element, from the browser {secrets.token_hex(3)}"
    composer = page.get_by_label("Message", exact=True)
    await composer.fill(text)
    await composer.press("Enter")
    event = await alice.wait_for_message(matrix_room, lambda e: city_body(e) == text)
    assert event["sender"] == bridge_env.user_id(f"city_{user}")

    # The app's typing makes the user's ghost type in Element.
    ghost = bridge_env.user_id(f"city_{user}")
    seen = TypingView(alice, matrix_room)
    # Past the gateway's 1 s typing gap after the send: within it, typing again right
    # after a message is coalesced away, while Synapse has already ended the ghost's
    # typing because the ghost sent the message (reported to the backend).
    await page.wait_for_timeout(1_500)
    await composer.press_sequentially("and one more", delay=20)
    await seen.until(lambda users: ghost in users)
    await composer.fill("")
    await composer.blur()
    await seen.until(lambda users: ghost not in users)

    # Element types: the app says so.
    localpart = alice.user_id.split(":")[0].lstrip("@")
    await alice.client.room_typing(matrix_room, typing_state=True, timeout=30_000)
    typing = page.get_by_test_id("typing")
    await expect(typing).to_contain_text("is typing…", timeout=15_000)
    await expect(typing).to_contain_text(localpart)

    # Element replies to the app's message (m.in_reply_to): a reply in the app, quoted.
    reply = f"hi browser, Element here {secrets.token_hex(3)}"
    await alice.send(
        matrix_room,
        f"> <{ghost}> {text}\n\n{reply}",
        **{"m.relates_to": {"m.in_reply_to": {"event_id": event["event_id"]}}},
    )
    shown = message_item(page, reply)
    await expect(shown).to_be_visible(timeout=15_000)
    await expect(shown.get_by_test_id("reply-quote")).to_contain_text(text)
    await expect(shown.locator(".city-chat__text")).to_have_text(reply)  # no fallback
    await expect(typing).to_have_text("", timeout=15_000)  # the message ended the typing
    # Members: the Element user (from the Matrix room) and this city user.
    members = page.get_by_test_id("members")
    await expect(members.locator(f'[data-member="{alice.user_id}"]')).to_contain_text("Matrix")
    await expect(members.locator(f'[data-member="{user}"]')).to_contain_text("online")
    # A reaction from the app on the Element user's message.
    await shown.hover()
    await shown.get_by_role("button", name="React", exact=True).click()
    await shown.get_by_role("button", name="React party").click()
    await expect(shown.locator('[data-reaction="🎉"]')).to_have_attribute("aria-pressed", "true")
    await shot(page, "room")
    # On a phone-sized screen the room still fits (one column, members first).
    await page.set_viewport_size({"width": 390, "height": 844})
    await shot(page, "room-phone")
