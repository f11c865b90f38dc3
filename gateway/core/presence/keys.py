"""Where the presence engine keeps each user, on one Redis or a Redis Cluster.

One Redis (the SPEC's layout, unchanged):

    {prefix}presence:user:<id>      the SPEC's key (online|away while not offline)
    {prefix}presence:devices:<id>   {prefix}presence:state:<id>
    {prefix}presence:rate:<len>:<id><device>
    {prefix}presence:deadlines      {prefix}presence:online     {prefix}presence:epoch

A Redis Cluster runs a script only on keys of one slot, and the presence script
writes a user's keys and the city-wide deadlines ZSET / online SET in one atomic
step (that step is what makes every transition come out of exactly one call). So
users are spread over N buckets (`PRESENCE_CLUSTER_BUCKETS`), bucket =
crc32(user id) mod N, and each bucket is a hash tag with its own deadlines ZSET,
online SET and epoch: the same keys with `presence:{b<k>}:` instead of
`presence:`. The tag comes before the user id, so an id holding braces cannot
change the slot; the prefix may not hold braces on a cluster (settings check it).
Sweeping visits the N deadlines ZSETs; counting online users sums N SCARDs (one
round trip per master); N is fixed, so both stay O(1) in the number of users.
"""

from __future__ import annotations

import zlib


class PresenceKeys:
    """Key names of the presence engine; `buckets=None` is the one-Redis layout."""

    def __init__(self, prefix: str, buckets: int | None) -> None:
        if buckets is not None and buckets < 1:
            raise ValueError("buckets must be >= 1")
        self.buckets = buckets
        if buckets is None:
            self.bases = [f"{prefix}presence:"]
        else:
            self.bases = [f"{prefix}presence:{{b{k}}}:" for k in range(buckets)]

    @property
    def clustered(self) -> bool:
        return self.buckets is not None

    def bucket(self, user_id: str) -> int:
        if self.buckets is None:
            return 0
        return zlib.crc32(user_id.encode("utf-8", "surrogatepass")) % self.buckets

    def base(self, user_id: str) -> str:
        return self.bases[self.bucket(user_id)]

    # User ids only ever end a key, so no id (colons, braces, unicode) can make two
    # users share a key or escape the prefix.

    def spec(self, user_id: str) -> str:
        return f"{self.base(user_id)}user:{user_id}"

    def devices(self, user_id: str) -> str:
        return f"{self.base(user_id)}devices:{user_id}"

    def state(self, user_id: str) -> str:
        return f"{self.base(user_id)}state:{user_id}"

    def rate(self, user_id: str, device: str) -> str:
        # The user id's length makes (user, device) -> key one-to-one.
        return f"{self.base(user_id)}rate:{len(user_id)}:{user_id}{device}"

    def user(self, user_id: str) -> list[str]:
        """KEYS of a per-user script call: all in the user's bucket (one slot)."""
        base = self.base(user_id)
        return [
            f"{base}devices:{user_id}",
            f"{base}state:{user_id}",
            f"{base}user:{user_id}",
            f"{base}deadlines",
            f"{base}online",
        ]

    def deadlines(self) -> list[str]:
        return [f"{base}deadlines" for base in self.bases]

    def online(self) -> list[str]:
        return [f"{base}online" for base in self.bases]

    def epochs(self) -> list[str]:
        """One per bucket: a shard that loses its data loses its buckets' epochs."""
        return [f"{base}epoch" for base in self.bases]
