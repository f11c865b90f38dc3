"""The City web app (web/app, SPEC §14) at /app/, when it has been built.

`make dev` and `make test` build it into web/app/dist; a gateway started without a
build simply has no /app/ (the API does not depend on it). Client-side routes fall
back to index.html. index.html is never cached, so a deploy shows at the next load;
Vite's content-hashed files under assets/ are cached for a year.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.responses import RedirectResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

APP_PATH = "/app"
DEFAULT_DIST = Path(__file__).resolve().parents[2] / "web" / "app" / "dist"
# Where the built app lives; CITY_WEB_DIST overrides it (e.g. in a container image).
DIST_ENV = "CITY_WEB_DIST"

_NO_CACHE = "no-cache, no-store, must-revalidate"
_IMMUTABLE = "public, max-age=31536000, immutable"


class WebAppFiles(StaticFiles):
    """Static files with an index.html fallback and cache headers by kind of file."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        try:
            response = await super().get_response(path, scope)
        except HTTPException as exc:
            # An unknown path without an extension is a client-side route.
            if exc.status_code != 404 or "." in path.rsplit("/", 1)[-1]:
                raise
            response = await super().get_response("index.html", scope)
        if response.status_code == 404 and "." not in path.rsplit("/", 1)[-1]:
            response = await super().get_response("index.html", scope)
        if path.startswith("assets/") and response.status_code in (200, 304):
            response.headers["Cache-Control"] = _IMMUTABLE
        else:
            response.headers["Cache-Control"] = _NO_CACHE
        # The token arrives in the fragment; never leak the page URL to other sites.
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response


def web_dist() -> Path:
    return Path(os.environ.get(DIST_ENV) or DEFAULT_DIST)


def mount_webapp(app: FastAPI, dist: Path | None = None) -> bool:
    """Serve the built app at /app/ if `dist` has an index.html; True when mounted."""
    dist = dist or web_dist()
    if not (dist / "index.html").is_file():
        return False

    async def to_app() -> RedirectResponse:
        return RedirectResponse(f"{APP_PATH}/", status_code=308)

    app.add_api_route(APP_PATH, to_app, include_in_schema=False, methods=["GET", "HEAD"])
    app.mount(APP_PATH, WebAppFiles(directory=dist, html=True), name="webapp")
    return True
