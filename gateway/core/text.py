"""Checks shared by everything that accepts human text."""

from __future__ import annotations

from gateway.core.errors import AppError

SNIPPET_CHARS = 140


def clean_text(value: str, *, field: str, max_chars: int, code: str = "invalid_body") -> str:
    """Reject empty, whitespace-only, NUL-containing (422 `code`) or over-long text
    (422 `{field}_too_long`, e.g. `body_too_long`, `prompt_too_long`)."""
    if "\x00" in value:
        raise AppError(422, code, f"{field} must not contain NUL characters")
    if not value.strip():
        raise AppError(422, code, f"{field} must not be empty")
    if len(value) > max_chars:
        raise AppError(
            422,
            f"{field}_too_long",
            f"{field} is longer than {max_chars} characters",
        )
    return value


def snippet(body: str) -> str:
    flat = " ".join(body.split())
    return flat if len(flat) <= SNIPPET_CHARS else flat[: SNIPPET_CHARS - 1] + "…"
