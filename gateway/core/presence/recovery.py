"""Converging after Redis lost presence data or this process missed updates.

Redis losing its data (a restart without persistence, a failover to an empty
replica) must not leave anyone stuck. A reconciler notices the loss (an epoch key
that vanished or changed) and re-declares the users this process remembers
(`KnownUsers`) through the engine's `seed`: one process wins per user; a user whose
tabs are still open beats again within the TTL and nothing is announced, the others
go offline through the sweeper, announced once. After the pub/sub subscription
comes back (updates published meanwhile were lost), each process re-reads the
states its sockets may have missed and sends them the differences.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable

from gateway.core.ports import PresenceDelivery
from gateway.core.presence.answers import REDIS_TIMEOUT_SECONDS, update_frame
from gateway.core.presence.engine import PresenceEngine
from gateway.core.presence.known import MAX_KNOWN_USERS, KnownUsers
from gateway.core.presence.types import PresenceTransition, outcome
from gateway.infra.redis_cluster_pipe import AnyPipe

log = logging.getLogger(__name__)

# Users re-declared or re-read per round trip during a catch-up.
_CATCH_UP_BATCH = 500


class PresenceRecovery:
    """Detects Redis data loss and re-subscriptions, and converges after either."""

    def __init__(
        self,
        engine: PresenceEngine,
        pipe: AnyPipe,
        known: KnownUsers,
        sockets: PresenceDelivery,
        announce: Callable[[list[PresenceTransition]], None],
        *,
        epoch_keys: list[str],
    ) -> None:
        """`epoch_keys`: one per presence bucket (one on a single Redis), so a cluster
        shard that loses its data is noticed by its buckets' epochs."""
        self.engine = engine
        self._pipe = pipe
        self.known = known
        self._sockets = sockets
        self.announce = announce
        self.epoch_keys = epoch_keys
        self._epoch: list[str] | None = None
        self._recheck = asyncio.Event()
        self._resubscribed = False
        self._synced = False  # the start-up snapshot of who is online was taken
        self.losses_seen = 0  # Redis data losses this process detected
        self.catch_ups = 0  # catch-ups that ran (startup snapshot included)
        # Called after this process re-declared users following a Redis data loss
        # (e.g. for the Matrix bridge to compare what it told Synapse with
        # `statuses()`); a failing listener is logged.
        self.loss_listeners: list[Callable[[], Awaitable[None]]] = []

    def on_subscribed(self, generation: int) -> None:
        """The channel's callback: after a re-subscription, catch the sockets up."""
        if generation > 1:
            self._resubscribed = True
            self._recheck.set()

    async def run_reconciler(self, interval_seconds: float) -> None:
        """Watch for Redis data loss and re-subscriptions; converge after either."""
        failing = False
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._recheck.wait(), interval_seconds)
            self._recheck.clear()
            try:
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not failing:
                    log.warning("presence reconciliation failed: %r; retrying", exc)
                failing = True
            else:
                failing = False

    async def reconcile(self) -> None:
        """One round: detect a data loss (re-declare known users), then catch up."""
        lost = await self._check_epoch()
        resubscribed, self._resubscribed = self._resubscribed, False
        try:
            if lost:
                self.losses_seen += 1
                log.warning(
                    "Redis lost the presence state; re-declaring %d known users", len(self.known)
                )
                await self._reseed()
                for listener in list(self.loss_listeners):
                    try:
                        await listener()
                    except Exception:
                        log.exception("presence loss listener %r failed", listener)
            if not self._synced:
                # First contact with Redis: learn who is online (to re-declare them
                # should Redis lose its data later); the sockets are new, tell them nothing.
                await self.catch_up(deliver=False)
                self._synced = True
            elif lost or resubscribed:
                await self.catch_up(deliver=True)
        except BaseException:
            self._resubscribed = self._resubscribed or resubscribed  # try again
            raise

    async def _check_epoch(self) -> bool:
        """True if Redis lost its data since the last check (the epoch key changed).

        `SET NX GET` in one step: the first process after a loss writes a new epoch,
        every other process reads it, and each sees it differs from the one it knew.
        """
        candidate = secrets.token_hex(8)
        async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
            found = await self._pipe.call_many(
                [("SET", key, candidate, "NX", "GET") for key in self.epoch_keys]
            )
        epoch = [candidate if one is None else str(one) for one in found]
        lost = self._epoch is not None and epoch != self._epoch
        self._epoch = epoch
        return lost

    async def _reseed(self) -> None:
        engine = self.engine
        known = self.known.snapshot()
        async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
            await self._pipe.call("SCRIPT", "LOAD", engine.script_source)
        for start in range(0, len(known), _CATCH_UP_BATCH):
            calls = []
            for user_id, status, ago in known[start : start + _CATCH_UP_BATCH]:
                keys, args = engine.seed_call(user_id, status, ago, engine.ttl_ms)
                calls.append(("EVALSHA", engine.script_sha, len(keys), *keys, *args))
            async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                replies = await self._pipe.call_many(calls)
            for (user_id, *_), reply in zip(known[start:], replies, strict=False):
                _, transition = outcome(user_id, reply)
                if transition is not None:  # not expected; announced if it happens
                    self.announce([transition])

    async def catch_up(self, *, deliver: bool) -> None:
        """Compare what this process knows with Redis; tell the sockets what changed.

        Covers the users remembered and everyone online now, so a transition whose
        `presence.update` this process missed (published while it was not
        subscribed) reaches its sockets. An update that arrives from the channel
        during the catch-up is newer than what was read here, and wins.
        """
        started = self.known.seq
        users = dict.fromkeys(user_id for user_id, _, _ in self.known.snapshot())
        async with asyncio.timeout(REDIS_TIMEOUT_SECONDS * 5):
            for user_id in await self.engine.online_users(MAX_KNOWN_USERS):
                users[user_id] = None
        ordered = list(users)
        for start in range(0, len(ordered), _CATCH_UP_BATCH):
            async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                states = await self.engine.get_statuses(ordered[start : start + _CATCH_UP_BATCH])
            for state in states:
                known = self.known.get(state.user_id)
                if known is not None and known.seq > started:
                    continue  # the channel told us something newer meanwhile
                if state.status == (known.status if known else "offline"):
                    continue
                self.known.note(state.user_id, state.status, state.last_active_ago)
                if deliver:
                    self._sockets.deliver(
                        update_frame(state.user_id, state.status, state.last_active_ago)
                    )
        self.catch_ups += 1
