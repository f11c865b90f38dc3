"""What the fuzz tests (test_fuzz_openapi.py, test_fuzz_ws.py) share.

- `fuzz_run(examples)`: hypothesis settings for a bounded run, the same cases every run
  unless `CITY_FUZZ_SEED=<int>` asks for others;
- `json_values()`: any JSON value, small;
- `fuzz_logged(...)`: run a blocking fuzz loop in a worker thread while the gateway
  serves on the event loop, failing on any ERROR the gateway logs meanwhile (and
  showing that log with a failure: it holds the traceback).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import hypothesis
import hypothesis.strategies as st
from hypothesis import HealthCheck, Phase, settings

SEED = int(os.environ["CITY_FUZZ_SEED"]) if os.environ.get("CITY_FUZZ_SEED") else None

T = TypeVar("T", bound=Callable[..., Any])


def examples(default: int) -> int:
    """How many cases a run draws: `CITY_FUZZ_EXAMPLES`, else `default`."""
    return int(os.environ.get("CITY_FUZZ_EXAMPLES", str(default)))


def fuzz_run(max_examples: int) -> Callable[[T], T]:
    """Settings (and the seed, if one is asked for) for a `@given` test, applied on top."""

    def apply(test: T) -> T:
        test = settings(
            max_examples=max_examples,
            deadline=None,
            database=None,
            # The same cases every run unless CITY_FUZZ_SEED asks for others: a red
            # `make test` is then reproducible, and exploring is a deliberate act.
            derandomize=SEED is None,
            # Shrinking a failure can take minutes; the first failing case is reported.
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )(test)
        if SEED is not None:
            test = hypothesis.seed(SEED)(test)
        return test

    return apply


def json_values(integers: st.SearchStrategy[int] | None = None) -> st.SearchStrategy[Any]:
    """Any JSON value: scalars, and lists and objects of them, a dozen leaves at most."""
    scalars = (
        st.none()
        | st.booleans()
        | (st.integers() if integers is None else integers)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=40)
    )
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
        ),
        max_leaves=12,
    )


class ErrorLog(logging.Handler):
    """Collects the gateway's ERROR records, to show the traceback of a failure."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.lines.append(text)


@contextmanager
def error_log() -> Iterator[ErrorLog]:
    handler = ErrorLog()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


async def fuzz_logged(fuzz: Callable[..., None], *args: Any) -> None:
    """`fuzz(*args)` in a worker thread (blocking clients; the gateway serves on the loop).

    Fails with the gateway's last ERROR records when it fails, and when it passes but
    the gateway logged an ERROR (work done after an answer fails only in the log).
    """
    with error_log() as errors:
        try:
            await asyncio.to_thread(fuzz, *args)
        except Exception as exc:
            logged = "\n".join(errors.lines[-5:])
            raise AssertionError(f"{exc}\n--- gateway ERROR log ---\n{logged}") from exc
        assert not errors.lines, "\n".join(errors.lines[-5:])
