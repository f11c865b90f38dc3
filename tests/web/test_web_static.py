"""The gateway serves a built City web app at /app/ (gateway/http/webapp.py)."""

from __future__ import annotations

from pathlib import Path

import httpx
from fastapi import FastAPI

from gateway.http.webapp import mount_webapp


def _dist(tmp_path: Path) -> Path:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html><title>City</title>")
    (tmp_path / "assets" / "index-abc123.js").write_text("console.log(1)")
    return tmp_path


async def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_index_is_never_cached_and_hashed_assets_are_cached_long(tmp_path: Path) -> None:
    app = FastAPI()
    assert mount_webapp(app, _dist(tmp_path))
    async with await _client(app) as http:
        index = await http.get("/app/")
        assert index.status_code == 200
        assert "<title>City</title>" in index.text
        assert "no-cache" in index.headers["cache-control"]
        assert index.headers["referrer-policy"] == "no-referrer"
        asset = await http.get("/app/assets/index-abc123.js")
        assert asset.status_code == 200
        assert "immutable" in asset.headers["cache-control"]
        assert "max-age=31536000" in asset.headers["cache-control"]


async def test_client_routes_fall_back_to_index_and_missing_files_are_404(tmp_path: Path) -> None:
    app = FastAPI()
    mount_webapp(app, _dist(tmp_path))
    async with await _client(app) as http:
        route = await http.get("/app/rooms/room_city_general")
        assert route.status_code == 200
        assert "<title>City</title>" in route.text
        assert "no-cache" in route.headers["cache-control"]
        assert (await http.get("/app/assets/missing-123.js")).status_code == 404
        bare = await http.get("/app")
        assert bare.status_code == 308
        assert bare.headers["location"] == "/app/"


def test_nothing_is_mounted_without_a_build(tmp_path: Path) -> None:
    app = FastAPI()
    assert not mount_webapp(app, tmp_path / "nothing")
    assert not any(getattr(r, "path", "").startswith("/app") for r in app.routes)


def test_the_openapi_document_does_not_list_the_app(tmp_path: Path) -> None:
    app = FastAPI()
    mount_webapp(app, _dist(tmp_path))
    assert not any(p.startswith("/app") for p in app.openapi()["paths"])
