"""Building the City web app (web/) for `make dev`, when npm is there."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from devstack.procs import say

WEB_DIR = Path(__file__).resolve().parents[1] / "web"


async def build_web_app() -> bool:
    """Build the City web app (web/) when npm is there; the API works without it."""
    npm = shutil.which("npm")
    if npm is None or not (WEB_DIR / "package.json").is_file():
        say("npm not found: the web app (/app/) is not built; the API works without it")
        return (WEB_DIR / "app" / "dist" / "index.html").is_file()
    if _web_build_current():
        return True
    lock = WEB_DIR / "package-lock.json"
    installed = WEB_DIR / "node_modules" / ".package-lock.json"
    steps: list[list[str]] = []
    if not installed.is_file() or installed.stat().st_mtime < lock.stat().st_mtime:
        steps.append([npm, "ci", "--no-audit", "--no-fund"])
    steps.append([npm, "run", "build"])
    say("building the web app (web/, npm run build)")
    for step in steps:
        proc = await asyncio.create_subprocess_exec(
            *step,
            cwd=WEB_DIR,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await proc.communicate()
        if proc.returncode != 0:
            tail = output.decode(errors="replace")[-1500:]
            say(f"the web app did not build ({' '.join(step[1:])}); /app/ is off:\n{tail}")
            return False
    return True


def _web_build_current() -> bool:
    """The build is newer than every source and package file (no need to rebuild)."""
    index = WEB_DIR / "app" / "dist" / "index.html"
    if not index.is_file():
        return False
    built = index.stat().st_mtime
    sources = [WEB_DIR / "package-lock.json", WEB_DIR / "app" / "index.html"]
    for folder in (WEB_DIR / "app" / "src", WEB_DIR / "client" / "src"):
        sources.extend(p for p in folder.rglob("*") if p.is_file())
    return all(p.stat().st_mtime <= built for p in sources if p.exists())
