"""Who is calling: user JWTs (HS256) and the internal service token."""

from __future__ import annotations

import hmac
import re
import time
from dataclasses import dataclass

import jwt

from gateway.core.errors import AppError, unauthorized
from gateway.infra.logs import bind_user_id

USER_ID_RE = re.compile(r"^u_[A-Za-z0-9_.=\-]{1,128}$")


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: a city user, or a trusted service (no user)."""

    user_id: str | None
    name: str | None = None
    is_service: bool = False
    # The token's `exp` (epoch seconds); sockets close with 4401 then (SPEC §12).
    expires_at: float | None = None

    def require_user(self) -> str:
        if self.user_id is None:
            raise AppError(403, "forbidden", "this call needs a user token")
        return self.user_id

    def may_act_as(self, user_id: str) -> bool:
        """A service may name any user; a user only themself."""
        return self.is_service or self.user_id == user_id


def mint_token(secret: str, user_id: str, name: str | None = None, ttl_seconds: int = 86400) -> str:
    now = int(time.time())
    claims: dict[str, object] = {"sub": user_id, "iat": now, "exp": now + ttl_seconds}
    if name:
        claims["name"] = name
    return jwt.encode(claims, secret, algorithm="HS256")


# Verified tokens by (secret, token) -> (principal, expiry). A browser sends the
# same token on every call; verifying the HMAC again each time was a measurable
# share of the hottest endpoints. Expiry is still checked on every use.
_VERIFIED: dict[tuple[str, str], tuple[Principal, float]] = {}
_VERIFIED_MAX = 50_000


def decode_user_token(secret: str, token: str) -> Principal:
    """Validate a user JWT; any problem is a 401 with the reason."""
    cached = _VERIFIED.get((secret, token))
    if cached is not None:
        principal, expires = cached
        if time.time() < expires:
            return principal
        del _VERIFIED[(secret, token)]
        raise unauthorized("token expired")
    principal, expires = _verify(secret, token)
    if len(_VERIFIED) >= _VERIFIED_MAX:
        _VERIFIED.clear()  # crude bound; refilling costs one verification per token
    _VERIFIED[(secret, token)] = (principal, expires)
    return principal


def _verify(secret: str, token: str) -> tuple[Principal, float]:
    try:
        # `exp` is required: a token without one would be valid forever (SPEC §12).
        claims = jwt.decode(
            token, secret, algorithms=["HS256"], options={"require": ["sub", "exp"]}
        )
    except jwt.ExpiredSignatureError:
        raise unauthorized("token expired") from None
    except jwt.MissingRequiredClaimError as exc:
        if exc.claim == "exp":
            raise unauthorized("token has no expiry (exp claim); mint one that expires") from None
        raise unauthorized("invalid token") from None
    except jwt.PyJWTError:
        raise unauthorized("invalid token") from None
    sub = claims.get("sub")
    if not isinstance(sub, str) or not USER_ID_RE.match(sub):
        raise unauthorized("token subject is not a city user id")
    name = claims.get("name")
    # Numeric by now (PyJWT checked it); the cache entry dies with the token.
    expires = float(claims["exp"])
    principal = Principal(
        user_id=sub,
        name=name if isinstance(name, str) and name.strip() else None,
        expires_at=expires,
    )
    return principal, expires


def bearer_from_header(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def is_internal_token(expected: str | None, presented: str) -> bool:
    return expected is not None and hmac.compare_digest(expected.encode(), presented.encode())


def authenticate(
    token: str | None, *, jwt_secret: str, internal_token: str | None, allow_service: bool
) -> Principal:
    """A user JWT, or (where the route allows it) the internal service token."""
    if not token:
        raise unauthorized("missing bearer token")
    if allow_service and is_internal_token(internal_token, token):
        return Principal(user_id=None, is_service=True)
    principal = decode_user_token(jwt_secret, token)
    bind_user_id(principal.user_id)  # logs of this request name the user
    return principal
