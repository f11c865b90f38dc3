"""`schemathesis run --checks all` against a real gateway (see test_fuzz_openapi.py).

Every phase (examples, coverage, fuzzing, stateful) and every check: documented
statuses, content types, headers and bodies; schema-valid requests accepted and
schema-violating ones refused; `Allow` on 405 and OPTIONS; declared authentication
enforced; ... — so /openapi.json is a contract a generated client can rely on.

Not applied: `max_response_time`, which schemathesis enables only with a limit —
latency on a shared test machine is not a contract (bench/ measures it).

Bounded time: `CITY_FUZZ_CLI_EXAMPLES` (default 30) cases per operation, seed 1
unless `CITY_FUZZ_SEED` asks for others. A longer local run:
`CITY_FUZZ_CLI_EXAMPLES=500 CITY_FUZZ_SEED=$RANDOM .venv/bin/pytest
tests/http/test_schemathesis_cli.py`.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.core.auth import mint_token
from tests.conftest import JWT_SECRET, GatewayFactory
from tests.fake_agents_core import FakeAgentsCore
from tests.http.test_fuzz_openapi import (
    FUZZ_USER,
    HS_TOKEN,
    MATRIX_OFFLINE,
    SEED,
    _error_log,
)


@pytest.fixture(scope="module")
def agents_core() -> Iterator[FakeAgentsCore]:
    with FakeAgentsCore() as fake:
        yield fake


CLI_EXAMPLES = int(os.environ.get("CITY_FUZZ_CLI_EXAMPLES", "30"))
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


def _cli_config(user_token: str) -> str:
    """schemathesis.toml for the run: credentials per route, and the 5xx that are
    documented answers while a dependency is down (see `_upstream_answer`)."""
    return f"""
[headers]
Authorization = "Bearer {user_token}"

[[operations]]
include-path-regex = "^/_matrix/"
headers = {{ Authorization = "Bearer {HS_TOKEN}" }}
checks.not_a_server_error.expected-statuses = ["1xx", "2xx", "3xx", "4xx", "502", "503", "504"]

[[operations]]
include-path = "/readyz"
checks.not_a_server_error.expected-statuses = ["1xx", "2xx", "3xx", "4xx", "503"]

# `before` is an opaque cursor that only the server can mint (it names the query it
# belongs to); no schema can tell a valid one from any other string, so a generated
# cursor is rightly refused (422 invalid_cursor) although "schema-valid".
[[operations]]
include-path = "/city/search"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "422"]
"""


@pytest.mark.timeout(600)
async def test_schemathesis_all_checks(
    gateway_factory: GatewayFactory, agents_core: FakeAgentsCore, tmp_path: Path
) -> None:
    """The run passes: no failure of any check, and no ERROR in the gateway's log."""
    gw = await gateway_factory(**MATRIX_OFFLINE, agents_core_url=agents_core.url)
    config = tmp_path / "schemathesis.toml"
    config.write_text(_cli_config(mint_token(JWT_SECRET, FUZZ_USER, "Fuzz", 3600)))
    command = [
        str(SCHEMATHESIS),
        "--config-file",
        str(config),
        "run",
        f"{gw.base_url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(CLI_EXAMPLES),
        "--seed",
        str(SEED if SEED is not None else 1),
        "--no-shrink",
        # One worker: hypothesis parses lambda sources with `ast`, which CPython 3.11
        # does not do safely from several threads at once (SystemError).
        "--workers",
        "1",
        "--request-timeout",
        "30",
    ]
    with _error_log() as errors:
        proc = await asyncio.create_subprocess_exec(
            *command,
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "NO_COLOR": "1"},
        )
        output, _ = await proc.communicate()
    text = output.decode(errors="replace")
    report = text[text.find("=== FAILURES ===") :] if "=== FAILURES ===" in text else text
    assert proc.returncode == 0, report[-20_000:]
    assert not errors.lines, "\n".join(errors.lines[-5:])
