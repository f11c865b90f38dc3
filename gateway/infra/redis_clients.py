"""Building the process's redis-py clients: one Redis, or a Redis Cluster (REDIS_CLUSTER).

With `cluster=True` the client is redis-py's asyncio `RedisCluster`, which learns the
slot map from the node in the URL, routes each command by its key's slot and follows
MOVED/ASK redirections. It is typed as `redis.asyncio.Redis` for its users: the
commands the gateway sends (single-slot scripts, single-key commands, SPUBLISH,
non-transactional pipelines of keyed commands) behave the same on both. Code whose
layout differs on a cluster asks :func:`is_cluster` (docs/redis-cluster.md).
"""

from __future__ import annotations

from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

# Connections a cluster client may open to one node (the single-node pool is unbounded).
_CLUSTER_CONNECTIONS_PER_NODE = 10_000


def redis_client(url: str, *, cluster: bool, **options: Any) -> aioredis.Redis:
    """`decode_responses` is on; `options` go to every connection."""
    if cluster:
        # A node's pool raises MaxConnectionsError past its size instead of waiting
        # (redis-py's asyncio cluster): room for every concurrent caller.
        options.setdefault("max_connections", _CLUSTER_CONNECTIONS_PER_NODE)
        return cast(aioredis.Redis, _Cluster.from_url(url, decode_responses=True, **options))
    return aioredis.from_url(url, decode_responses=True, **options)


class _Cluster(RedisCluster):
    """redis-py's RedisCluster, initialized before a first command is even parsed.

    redis-py (8.1) resolves a command's routing policy before its lazy
    initialization, over the start-up node's connections, which the initialization
    then closes: concurrent first commands on a new client failed with
    `'NoneType' object has no attribute 'writelines'`. Initializing first (under
    redis-py's own lock) serializes only that first contact.
    """

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        if self._initialize:
            await self.initialize()
        return await super().execute_command(*args, **kwargs)


def is_cluster(client: object) -> bool:
    return isinstance(client, RedisCluster)


def slot_of(key: str) -> int:
    """The cluster slot of a key or shard channel (its hash tag, if any, decides)."""
    return int(key_slot(key.encode()))


def hash_tag(value: str) -> str:
    """A hash tag that keeps keys built around `value` in one slot.

    Only for values that cannot contain braces (bucket numbers, process ids, room
    ids); user-supplied text must never sit inside a tag.
    """
    if "{" in value or "}" in value:
        raise ValueError(f"a hash tag cannot hold braces: {value!r}")
    return "{" + value + "}"
