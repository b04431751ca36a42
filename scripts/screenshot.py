"""Regenerate the README's screenshot of the status page (docs/page.png).

    make demo && python -m scripts.screenshot                 # serves .driftlight/demo, shoots, stops
    python -m scripts.screenshot --url http://127.0.0.1:8000  # an API that is already running

Drives Debian's Chromium through Playwright (`apt-get install chromium`, pip `playwright`), with
every request that leaves 127.0.0.1 refused: the page must render offline.
"""

from __future__ import annotations

import argparse
import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parent.parent
# The route guard in `shoot` refuses the page's own requests; it cannot see the browser's. Chromium
# resolves accounts.google.com and other hosts at start whatever the page asks (seen with strace:
# ~36 DNS queries to the machine's resolver per shot). With this rule every host name but the
# loopback resolves to nothing, so no query leaves the machine (tests/integration/test_page.py).
OFFLINE_ARGS = ("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",)


def launch_offline(pw):  # type: ignore[no-untyped-def]
    """Debian's Chromium (or DRIFTLIGHT_CHROMIUM), headless, unable to resolve any host but the loopback."""
    return pw.chromium.launch(executable_path=os.environ.get("DRIFTLIGHT_CHROMIUM", CHROMIUM), args=list(OFFLINE_ARGS))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def shoot(url: str, out: Path, width: int = 1280, open_field: str | None = "temp") -> list[str]:
    """Screenshot `url` (full page) to `out`; returns the requests refused for leaving the machine."""
    from playwright.sync_api import sync_playwright

    refused: list[str] = []
    with sync_playwright() as pw:
        browser = launch_offline(pw)
        try:
            ctx = browser.new_context(viewport={"width": width, "height": 900}, device_scale_factor=1)

            def guard(route) -> None:  # type: ignore[no-untyped-def]
                if urlsplit(route.request.url).hostname in ("127.0.0.1", "localhost"):
                    route.continue_()
                else:
                    refused.append(route.request.url)
                    route.abort()

            ctx.route("**/*", guard)
            page = ctx.new_page()
            page.goto(url, wait_until="load")
            if open_field and page.locator(f"details.field[data-field='{open_field}'] > summary").count():
                page.locator(f"details.field[data-field='{open_field}'] > summary").click()
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out), full_page=True)
        finally:
            browser.close()
    return refused


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, default=Path(".driftlight/demo"), help="stores to serve (default: the demo's)")
    ap.add_argument("--url", help="shoot an API that is already running instead of serving --home")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "page.png")
    ap.add_argument("--port", type=int, default=0, help="port to serve --home on (default: a free one)")
    args = ap.parse_args()
    if args.url:
        refused = shoot(args.url.rstrip("/") + "/", args.out)
    else:
        from core.server_process import start_server, stop_server, wait_ready
        from core.settings import Settings

        if not (args.home / "predictions.db").exists():
            raise SystemExit(f"{args.home} holds no stores: run `make demo` first (or pass --url)")
        settings = Settings(home=args.home, port=args.port or free_port())
        url = f"http://{settings.host}:{settings.port}"
        proc = start_server(settings, args.home / "screenshot-server.log")
        try:
            wait_ready(url, proc)
            refused = shoot(url + "/", args.out)
        finally:
            stop_server(proc)
    if refused:
        raise SystemExit(f"the page tried to leave the machine: {refused}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    main()
