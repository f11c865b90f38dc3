"""Print the gateway's OpenAPI document as JSON, without a server or any service.

create_app() only builds routes; nothing connects until the lifespan starts, so
test-like settings with placeholder secrets are enough. Run from the repository root:
    .venv/bin/python web/client/scripts/dump_openapi.py
"""

from __future__ import annotations

import json
import sys

from gateway.app.main import create_app
from gateway.infra.settings import Settings


def main() -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        city_env="test",
        city_jwt_secret="openapi-dump-placeholder",
        city_internal_token="openapi-dump-placeholder",
    )
    document = create_app(settings).openapi()
    json.dump(document, sys.stdout, indent=2, sort_keys=True, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
