"""The real thing: ``prefloop app`` (``streamlit run``) on a free loopback port, driven by Debian's
headless Chromium through Playwright. Never ``playwright install``: the system browser is used."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import Engine

from storage.auth import create_annotator
from storage.db import session_scope
from storage.models import Role
from tests.conftest import REPO, free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO / "test-artifacts"
SERVER_START_TIMEOUT_S = 60


def chromium_or_skip() -> str:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("Chromium missing: .ci/run installs Debian's chromium")
        pytest.skip("Chromium not installed (apt-get install -y chromium chromium-driver)")
    return CHROMIUM


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
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
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


@dataclass
class App:
    url: str
    engine: Engine
    tokens: dict[str, str] = field(default_factory=dict)


def add_people(engine: Engine) -> dict[str, str]:
    """Two annotators and an admin, with the tokens `prefloop annotators add` would print."""
    people = {"alice": Role.annotator, "bob": Role.annotator, "root": Role.admin}
    with session_scope(engine, write=True) as session:
        return {name: create_annotator(session, name, role) for name, role in people.items()}


@pytest.fixture
def app(engine: Engine, sqlite_url: str) -> Iterator[App]:
    """A fresh database with people, served with sign-in required (local user off)."""
    tokens = add_people(engine)
    proc, url = start_app(sqlite_url, "annotate.allow_local_user=false", "annotate.eval_share=0")
    try:
        yield App(url, engine, tokens)
    finally:
        stop_app(proc)


@pytest.fixture(scope="session")
def browser():
    executable = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
