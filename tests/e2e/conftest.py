"""The real thing: ``prefloop app`` (``streamlit run``) on a free loopback port, driven by Debian's
headless Chromium through Playwright. Never ``playwright install``: the system browser is used."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import Engine

from storage.auth import create_annotator
from storage.db import session_scope
from storage.models import Role
from testkit.app_server import CHROMIUM, CHROMIUM_ARGS, start_app, stop_app
from tests.conftest import REPO, missing

ARTIFACTS = REPO / "test-artifacts"


def chromium_or_skip() -> str:
    if not Path(CHROMIUM).exists():
        missing(f"Chromium ({CHROMIUM})", "apt-get install chromium chromium-driver")
    return CHROMIUM


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


SIGN_IN_REQUIRED = ("annotate.allow_local_user=false", "annotate.eval_share=0", "model.base=tiny")


@pytest.fixture
def app_with(engine: Engine, sqlite_url: str) -> Iterator[Callable[..., App]]:
    """Starts the app on a fresh database with people, sign-in required, and these extra settings."""
    tokens = add_people(engine)
    procs = []

    def start(*overrides: str) -> App:
        proc, url = start_app(sqlite_url, *SIGN_IN_REQUIRED, *overrides)
        procs.append(proc)
        return App(url, engine, tokens)

    try:
        yield start
    finally:
        for proc in procs:
            stop_app(proc)


@pytest.fixture
def app(app_with) -> App:
    """A fresh database with people, served with sign-in required (local user off)."""
    return app_with()


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
