"""Run the API (`driftlight serve`) as a child process, wait until it is ready, stop it by its PID.

Used by the demo, the live drills and the benchmarks: the same command a user types, in its own
process, stopped with SIGTERM (a graceful shutdown flushes the prediction log).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from core.settings import Settings


def port_taken(host: str, port: int) -> str | None:
    """Why `host:port` cannot be served on (something listens there already), or None if free."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            return f"port {port} on {host} is already in use ({exc.strerror}): stop what listens there or pick another port"
    return None


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 90.0) -> float:
    """Seconds until GET /ready answers 200; raises if the server dies or the time runs out."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode} before it was ready")
        try:
            if httpx.get(f"{url}/ready", timeout=1.0).status_code == 200:
                return time.perf_counter() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url}/ready did not answer 200 within {timeout} s")


def start_server(settings: Settings, log_path: Path) -> subprocess.Popen[bytes]:

    env = {**os.environ, **settings.as_env(), "OMP_NUM_THREADS": "1"}
    with open(log_path, "ab") as fh:
        return subprocess.Popen([sys.executable, "-m", "driftlight.cli", "serve"], env=env, stdout=fh, stderr=subprocess.STDOUT)


CLEAN_EXIT = (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM after a graceful shutdown


def stop_server(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    """SIGTERM, then wait for the graceful shutdown (which flushes the log); kill only on timeout."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()
