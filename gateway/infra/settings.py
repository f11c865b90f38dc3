"""One settings class for the whole service, read from the environment and `.env`.

Validation happens here so that a bad configuration stops start-up with one clear
line instead of failing later in the middle of a request.
"""

from __future__ import annotations

from functools import cached_property
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Values that look like secrets but are copied from an example file.
_PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "secret", "dev", "test", "xxx", "todo"}


class ConfigError(Exception):
    """A setting is missing or wrong; the message names it."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    # --- deployment ---------------------------------------------------------------
    city_env: Literal["production", "development", "test"] = "production"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/city"
    database_pool_size: int = Field(default=10, ge=1, le=200)
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Prefix for every Redis key and channel. Empty in production (keys are exactly
    # `presence:user:{id}`); test runs set one so that parallel runs do not collide.
    city_redis_prefix: str = ""
    # REDIS_URL names one node of a Redis Cluster (7.0+): keys are hash-tagged so each
    # script touches one slot, room fanout uses SPUBLISH/SSUBSCRIBE (docs/redis-cluster.md).
    redis_cluster: bool = False
    # Cluster only: presence users are spread over this many hash-tagged buckets (each
    # a slot with its own deadlines ZSET and online SET). A sweep costs one call per
    # bucket; counting the online users sums one SCARD per bucket.
    presence_cluster_buckets: int = Field(default=16, ge=1, le=1024)
    nats_url: str | None = None
    # JetStream stream and subject prefix for city events (gateway/adapters/nats_bus.py); the
    # stream captures `{prefix}.>`. Tests use their own so runs can share one server.
    nats_stream: str = Field(default="CITY", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    nats_subject_prefix: str = Field(default="city", pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
    # Events waiting for NATS beyond this are dropped, oldest first (best effort).
    nats_queue_max: int = Field(default=10_000, ge=1)
    city_auto_migrate: bool = True
    # Worker processes of `city-gateway serve` (`--workers` overrides): 1, a number, or
    # "auto" (the CPUs this process may use, cgroup quota included). docs/operations.md.
    city_workers: int | Literal["auto"] = 1
    log_format: Literal["json", "human"] = "json"
    log_level: str = "INFO"

    # --- auth ---------------------------------------------------------------------
    city_jwt_secret: SecretStr | None = None
    city_internal_token: SecretStr | None = None

    # --- city ---------------------------------------------------------------------
    city_default_rooms: str = "general,welcome,builders"
    city_message_max_chars: int = Field(default=4000, ge=1, le=100_000)
    # Largest HTTP request body accepted at all (413 above it).
    city_max_request_bytes: int = Field(default=256 * 1024, ge=1024)
    # Largest file GET /city/media/... streams from Matrix (413 above it). 25 MiB.
    city_media_max_bytes: int = Field(default=25 * 1024 * 1024, ge=1)
    # Feed events older than this are deleted (messages stay); 0 keeps them forever.
    # docs/data-retention.md.
    city_feed_keep_days: float = Field(default=30, ge=0)

    # --- presence -----------------------------------------------------------------
    presence_ttl_seconds: float = Field(default=40, gt=0)
    presence_heartbeat_seconds: float = Field(default=20, gt=0)
    presence_away_after_seconds: float = Field(default=300, gt=0)
    presence_offline_grace_seconds: float = Field(default=5, ge=0, le=10)
    presence_sweep_interval_seconds: float = Field(default=0.5, gt=0)

    # --- limits for a public deployment (SPEC §12) ---------------------------------
    # Each is counted across every process (Redis) and refused with 429 / an error
    # frame; see docs/security.md for what each one protects.
    # Messages per user, REST and WebSocket together: a token bucket.
    limit_messages_per_second: float = Field(default=10, gt=0)
    limit_messages_burst: int = Field(default=30, ge=1)
    # Rooms created per user per hour (each also creates a Matrix room).
    limit_rooms_per_hour: int = Field(default=10, ge=1)
    # Live presence devices per user, HTTP heartbeats and sockets together.
    limit_presence_devices: int = Field(default=16, ge=1, le=1000)
    # Heartbeats per device: a token bucket.
    limit_heartbeats_per_second: float = Field(default=1, gt=0)
    limit_heartbeats_burst: int = Field(default=5, ge=1)
    # Open WebSockets per user, room and presence sockets together (close 4429 above).
    limit_websockets_per_user: int = Field(default=32, ge=1)
    # Invites @secondme accepts from one Matrix user per hour (each is a joined room).
    limit_secondme_invites_per_hour: int = Field(default=5, ge=1)

    # --- websockets ---------------------------------------------------------------
    ws_max_frame_bytes: int = 64 * 1024
    ws_send_queue_frames: int = Field(default=256, ge=1)
    # Lease of a process's room membership record; a dead process's members vanish
    # from members_online after at most this long.
    ws_member_lease_seconds: float = Field(default=30, gt=0)

    # --- matrix -------------------------------------------------------------------
    matrix_homeserver_url: str | None = None
    matrix_server_name: str | None = None
    matrix_as_token: SecretStr | None = None
    matrix_hs_token: SecretStr | None = None
    matrix_ghost_prefix: str = "city_"
    matrix_bot_localpart: str = "citybot"
    matrix_appservice_id: str = "city-gateway"
    # Where Synapse reaches this service (goes into the registration YAML).
    matrix_appservice_url: str = "http://127.0.0.1:8080"
    # Bridge tuning (bridge/): parallel rooms drained by the outbox sender, how often it
    # looks for other processes' rows and due retries, the longest retry back-off, the
    # timeout of one client-server call, and how often online ghosts' presence is
    # re-sent (Synapse drops a non-syncing user to offline after ~30 s).
    matrix_outbox_concurrency: int = Field(default=10, ge=1, le=100)
    matrix_outbox_poll_seconds: float = Field(default=1.0, gt=0)
    matrix_retry_max_seconds: float = Field(default=30.0, gt=0)
    matrix_request_timeout_seconds: float = Field(default=15.0, gt=0)
    matrix_presence_refresh_seconds: float = Field(default=20.0, gt=0)
    # A ghost's presence is sent to Synapse at most once per this many seconds; the
    # last state always wins (a flapping user costs one PUT per window, not one each).
    matrix_presence_debounce_seconds: float = Field(default=2.0, ge=0)

    # --- second me / agents core ----------------------------------------------------
    secondme_agent_id: str = "ag_secondme_global"
    secondme_matrix_localpart: str = "secondme"
    secondme_transport: Literal["http", "nats"] = "http"
    secondme_history_messages: int = Field(default=10, ge=0, le=100)
    secondme_rate_per_minute: int = Field(default=20, ge=1)
    agents_core_url: str | None = None
    agents_core_token: SecretStr | None = None
    agents_core_connect_timeout: float = Field(default=5, gt=0)
    agents_core_timeout: float = Field(default=30, gt=0)

    @field_validator("nats_url", "matrix_homeserver_url", "agents_core_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("city_workers", mode="before")
    @classmethod
    def _workers(cls, value: object) -> object:
        if value == "auto":
            return value
        try:
            workers = int(str(value))
        except ValueError:
            workers = 0
        if not 1 <= workers <= 256:
            raise ValueError("must be a number from 1 to 256, or 'auto'")
        return workers

    @field_validator("matrix_homeserver_url", "agents_core_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _check_secrets(self) -> Settings:
        strict = self.city_env == "production"
        _require_secret("CITY_JWT_SECRET", self.city_jwt_secret, strict)
        if self.matrix_homeserver_url:
            if not self.matrix_server_name:
                raise ValueError("MATRIX_SERVER_NAME is required when MATRIX_HOMESERVER_URL is set")
            _require_secret("MATRIX_AS_TOKEN", self.matrix_as_token, strict)
            _require_secret("MATRIX_HS_TOKEN", self.matrix_hs_token, strict)
        if self.city_internal_token is not None:
            _require_secret("CITY_INTERNAL_TOKEN", self.city_internal_token, strict)
        if self.redis_cluster and ("{" in self.city_redis_prefix or "}" in self.city_redis_prefix):
            # The keys' own hash tags must be the first braces in every key.
            raise ValueError("CITY_REDIS_PREFIX must not contain braces with REDIS_CLUSTER")
        return self

    # --- derived ------------------------------------------------------------------
    @cached_property
    def default_room_slugs(self) -> list[str]:
        return [s.strip() for s in self.city_default_rooms.split(",") if s.strip()]

    @property
    def matrix_enabled(self) -> bool:
        return self.matrix_homeserver_url is not None

    @property
    def jwt_secret(self) -> str:
        assert self.city_jwt_secret is not None  # guaranteed by _check_secrets
        return self.city_jwt_secret.get_secret_value()


def _require_secret(name: str, value: SecretStr | None, strict: bool) -> None:
    if value is None or not value.get_secret_value():
        raise ValueError(f"{name} is required")
    if strict and value.get_secret_value().lower() in _PLACEHOLDER_SECRETS:
        raise ValueError(f"{name} is a placeholder value; set a real secret")
    if strict and len(value.get_secret_value()) < 16:
        raise ValueError(f"{name} is too short; use at least 16 random characters")


def load_settings(**overrides: object) -> Settings:
    """Build settings or raise ConfigError with one line naming the bad setting."""
    from pydantic import ValidationError

    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "configuration"
        msg = first["msg"].removeprefix("Value error, ")
        if first["loc"]:
            raise ConfigError(f"invalid setting {field.upper()}: {msg}") from None
        raise ConfigError(msg) from None
