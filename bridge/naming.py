"""Names on the Matrix side: ghosts, the bot, room aliases, and which are ours.

City user `u_123` is ghost `@city_u_123:S`. Matrix localparts allow only
`a-z 0-9 . _ = - /`, so anything else (upper case, and `=` itself) is written `=xx`
with the UTF-8 bytes in lower-case hex. `=` is the escape character, so the mapping
is reversible and the common ids (`u_` + digits/lower case) stay readable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from bridge.registration import ALIAS_PREFIX
from gateway.core.auth import USER_ID_RE
from gateway.core.ids import SLUG_RE, room_id_for_slug, slug_from_room_id
from gateway.core.ports import MatrixIdentity, NoMatrixIdentity
from gateway.infra.settings import Settings

_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-/")
_HEX_RE = re.compile(r"^[0-9a-f]{2}$")
_LOCALPART_RE = re.compile(r"^[a-z0-9._=\-/]+$")


def escape_localpart(value: str) -> str:
    out: list[str] = []
    for ch in value:
        if ch in _PLAIN:
            out.append(ch)
        else:
            out.extend(f"={b:02x}" for b in ch.encode())
    return "".join(out)


def unescape_localpart(value: str) -> str | None:
    """The original string, or None when `value` is not something we produced."""
    if not _LOCALPART_RE.match(value):
        return None
    data = bytearray()
    i = 0
    while i < len(value):
        if value[i] == "=":
            hexpair = value[i + 1 : i + 3]
            if not _HEX_RE.match(hexpair):
                return None
            data.append(int(hexpair, 16))
            i += 3
        else:
            data.extend(value[i].encode())
            i += 1
    try:
        decoded = data.decode()
    except UnicodeDecodeError:
        return None
    # Only the canonical spelling maps back (so two Matrix ids never name one user).
    return decoded if escape_localpart(decoded) == value else None


def split_user_id(user_id: str) -> tuple[str, str] | None:
    if not user_id.startswith("@") or ":" not in user_id:
        return None
    localpart, _, server = user_id[1:].partition(":")
    return localpart, server


@dataclass(frozen=True, slots=True)
class Names:
    """Every Matrix name the bridge derives from settings."""

    server_name: str
    ghost_prefix: str
    bot_localpart: str
    secondme_localpart: str
    secondme_agent_id: str

    @classmethod
    def from_settings(cls, settings: Settings) -> Names:
        assert settings.matrix_server_name is not None
        return cls(
            server_name=settings.matrix_server_name,
            ghost_prefix=settings.matrix_ghost_prefix,
            bot_localpart=settings.matrix_bot_localpart,
            secondme_localpart=settings.secondme_matrix_localpart,
            secondme_agent_id=settings.secondme_agent_id,
        )

    def user_id(self, localpart: str) -> str:
        return f"@{localpart}:{self.server_name}"

    @property
    def bot(self) -> str:
        return self.user_id(self.bot_localpart)

    @property
    def secondme(self) -> str:
        return self.user_id(self.secondme_localpart)

    # --- ghosts -------------------------------------------------------------------
    def ghost_for(self, city_id: str) -> str:
        """The ghost of a city user (u_…) or agent (ag_…)."""
        return self.user_id(self.ghost_prefix + escape_localpart(city_id))

    def city_id_of_ghost(self, matrix_user_id: str) -> str | None:
        """u_… (or ag_…) for one of our ghosts; None for anyone else."""
        parts = split_user_id(matrix_user_id)
        if parts is None or parts[1] != self.server_name:
            return None
        localpart = parts[0]
        if not localpart.startswith(self.ghost_prefix):
            return None
        city_id = unescape_localpart(localpart[len(self.ghost_prefix) :])
        if city_id is None:
            return None
        if USER_ID_RE.match(city_id) or city_id.startswith("ag_"):
            return city_id
        return None

    def author_user_id(self, user_id: str | None, agent_id: str | None) -> str | None:
        """Who speaks a city message on Matrix: Second Me, a user's or agent's ghost."""
        if agent_id is not None:
            if agent_id == self.secondme_agent_id:
                return self.secondme
            return self.ghost_for(agent_id)
        if user_id is not None:
            return self.ghost_for(user_id)
        return None

    def is_ours(self, matrix_user_id: str) -> bool:
        """In our exclusive namespace: every event from these is an echo of ours."""
        parts = split_user_id(matrix_user_id)
        if parts is None or parts[1] != self.server_name:
            return False
        localpart = parts[0]
        return localpart in (self.bot_localpart, self.secondme_localpart) or (
            localpart.startswith(self.ghost_prefix)
        )

    # --- rooms --------------------------------------------------------------------
    def alias_localpart(self, city_room_id: str) -> str:
        slug = slug_from_room_id(city_room_id)
        if slug is None:
            raise ValueError(f"not a city room id: {city_room_id!r}")
        return ALIAS_PREFIX + slug

    def alias_for(self, city_room_id: str) -> str:
        return f"#{self.alias_localpart(city_room_id)}:{self.server_name}"

    def city_room_of_alias(self, alias: str) -> str | None:
        """room_city_{slug} for `#city_{slug}:S`, else None."""
        if not alias.startswith("#") or ":" not in alias:
            return None
        localpart, _, server = alias[1:].partition(":")
        if server != self.server_name or not localpart.startswith(ALIAS_PREFIX):
            return None
        slug = localpart[len(ALIAS_PREFIX) :]
        return room_id_for_slug(slug) if SLUG_RE.match(slug) else None


class GhostIdentity:
    """The core's MatrixIdentity port: a city user's Matrix id is their ghost's.

    Cached: presence answers name the same few users over and over.
    """

    def __init__(self, names: Names) -> None:
        self._ghost_for = lru_cache(maxsize=65_536)(names.ghost_for)

    def matrix_user_id(self, user_id: str) -> str | None:
        return self._ghost_for(user_id)


def matrix_identity(settings: Settings) -> MatrixIdentity:
    """Ghost ids when the bridge is configured; no Matrix id otherwise."""
    if not settings.matrix_enabled or not settings.matrix_server_name:
        return NoMatrixIdentity()
    return GhostIdentity(Names.from_settings(settings))
