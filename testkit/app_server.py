"""``prefloop app`` (``streamlit run``) on a free loopback port, and the headless Chromium that drives it:
the e2e tests and ``bench/bench_app.py`` start the app the same way."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request

from core.net import free_port
from core.paths import REPO_ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SERVER_START_TIMEOUT_S = 60


def wait_healthy(url: str, proc: subprocess.Popen, timeout_s: float = SERVER_START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited with {proc.returncode} before answering")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as resp:
                if resp.read().decode().strip() == "ok":
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the app did not answer {url}/_stcore/health within {timeout_s} s")


def start_app(db_url: str, *overrides: str, host: str = "127.0.0.1") -> tuple[subprocess.Popen, str]:
    """``prefloop app`` exactly as an operator runs it; returns the process and its base URL."""
    port = free_port()
    sets = [arg for item in overrides for arg in ("--set", item)]
    cmd = [
        sys.executable,
        "-m",
        "prefloop.cli",
        "--db",
        db_url,
        *sets,
        "app",
        "--host",
        host,
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
    except RuntimeError:
        proc.kill()
        raise RuntimeError(proc.stderr.read().decode(errors="replace")[-2000:]) from None
    return proc, url


def stop_app(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
