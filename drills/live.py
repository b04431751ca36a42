"""Every drill, as a user runs it: `driftlight serve` in one process, `driftlight drill NAME` in another.

`python -m drills.live` trains a champion into its own home if it has none (`driftlight train
--if-missing`), starts `driftlight serve`, runs `driftlight drill NAME --json` for every drill in
the catalogue, stops the server and prints a Markdown table (also written to docs/drills.md).
Exit code 1 if any drill missed its expectation.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    from core.server_process import start_server, stop_server, wait_ready
    from core.settings import Settings
    from drills.catalogue import DRILLS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=ROOT / ".driftlight" / "drills")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "drills.md")
    args = parser.parse_args()
    settings = Settings(home=args.home, port=args.port)
    args.home.mkdir(parents=True, exist_ok=True)

    env = {**os.environ, **settings.as_env(), "MLFLOW_DISABLE_TELEMETRY": "true"}
    cli = [sys.executable, "-m", "driftlight.cli"]
    subprocess.run([*cli, "train", "--if-missing"], env=env, check=True)
    url = f"http://{settings.host}:{settings.port}"
    proc = start_server(settings, args.home / "server.log")
    rows, failed = [], 0
    t_all = time.perf_counter()
    try:
        wait_ready(url, proc)
        for d in DRILLS:
            t0 = time.perf_counter()
            r = subprocess.run([*cli, "drill", d.name, "--url", url, "--json"], env=env, capture_output=True, text=True)
            try:
                res = json.loads(r.stdout)
            except json.JSONDecodeError:
                res = {"passed": False, "phases": []}
                print(r.stdout[-2000:], r.stderr[-2000:], file=sys.stderr)
            failed += r.returncode != 0
            shown = " -> ".join(
                p["status"] + ("" if p["status"] == p["raw_status"] else f" (raw {p['raw_status']})") for p in res["phases"]
            )
            top = "; ".join(p["top"][0].split(" (")[0] if p["top"] else "-" for p in res["phases"])
            rows.append(
                f"| `{d.name}` | {' -> '.join('/'.join(p.expect) for p in d.phases)} | {shown} | {top} "
                f"| {'met' if r.returncode == 0 else 'NOT MET'} (exit {r.returncode}) | {time.perf_counter() - t0:.1f} s |"
            )
            print(rows[-1], flush=True)
    finally:
        stop_server(proc)
    text = "\n".join(
        [
            "# Drills against a live service",
            "",
            f"Produced by `python -m drills.live` ({time.perf_counter() - t_all:.0f} s): `driftlight serve` in its own process,",
            "then `driftlight drill NAME --json` for each drill (2,000 flights per window from the champion's",
            "held-out control days; labels sent where the drill needs them). Top reason = the first ranked reason.",
            "",
            "| drill | expected | shown (raw) | top reason | verdict | time |",
            "| --- | --- | --- | --- | --- | --- |",
            *rows,
            "",
        ]
    )
    args.out.write_text(text)
    print(text)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
