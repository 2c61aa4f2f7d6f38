"""Shared fixtures: real databases (an SQLite file, and a real PostgreSQL server on a loopback port).

``PREFLOOP_REQUIRE_ALL=1`` (set by ``make test`` and so by CI) makes a missing system part a failure and
any skip a failed run; without it (``make test-fast``, a bare ``pytest``) such tests skip and the summary
says which and how many were left out."""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from core.net import free_port
from storage.db import make_engine, migrate

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
REQUIRE_ALL = os.environ.get("PREFLOOP_REQUIRE_ALL") == "1"


def missing(what: str, install: str) -> None:
    """A system part the test needs is absent: a failure under ``make test``, else a skip saying so."""
    if REQUIRE_ALL:
        pytest.fail(f"{what} missing; `make test` installs it ({install})", pytrace=False)
    pytest.skip(f"{what} not installed ({install}; `make test` installs it)")


# Under `-n 2` (make test) each file runs whole on one worker (--dist loadfile: module fixtures such as the
# vLLM server and the loop-learns scenarios are built once). The loop-learns file is the longest by far
# (~7.5 min on its own two threads), then the other slow files: started first, the fast files fill the
# other worker around them instead of trailing after them.
LONGEST_FIRST = ("test_loop_learns.py",)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}

    def rank(item: pytest.Item) -> int:  # per file, so the order inside a file stays as written
        return 0 if item.path.name in LONGEST_FIRST else 1 if item.path in slow_files else 2

    items.sort(key=rank)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Under ``make test`` a skipped test is a failed run: the suite is only green when all of it ran."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if REQUIRE_ALL and reporter is not None and reporter.stats.get("skipped"):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    skipped = len(terminalreporter.stats.get("skipped", []))
    if REQUIRE_ALL and skipped:
        terminalreporter.write_line(
            f"FAILED: {skipped} test(s) skipped under PREFLOOP_REQUIRE_ALL=1 (make test runs everything)",
            red=True,
        )
    elif skipped:
        terminalreporter.write_line(
            f"not the whole suite: {skipped} skipped (reasons below); `make test` runs them all", yellow=True
        )


def _as_postgres_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A throw-away PostgreSQL cluster (Debian's binaries) on 127.0.0.1; yields a base URL."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:
        missing("PostgreSQL server binaries", "apt-get install postgresql")
    bindir = Path(bins[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="prefloop-pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    port = free_port()
    quiet = {"check": True, "stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE}
    subprocess.run(
        _as_postgres_user([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "prefloop"]), **quiet
    )
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off"
    subprocess.run(
        _as_postgres_user(
            [str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(root / "log"), "-w", "start"]
        ),
        **quiet,
    )
    try:
        yield f"postgresql+psycopg2://prefloop@127.0.0.1:{port}"
    finally:
        subprocess.run(
            _as_postgres_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]), **quiet
        )
        shutil.rmtree(root, ignore_errors=True)


_pg_db_counter = itertools.count()


def fresh_postgres_url(server: str) -> str:
    name = f"t{os.getpid()}_{next(_pg_db_counter)}_{int(time.time() * 1000) % 100000}"
    admin = make_engine(f"{server}/postgres").execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return f"{server}/{name}"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'prefloop.db'}"


@pytest.fixture
def engine(sqlite_url: str) -> Iterator[Engine]:
    """A fresh, migrated SQLite file: the default for tests that are not about the backend."""
    eng = make_engine(sqlite_url)
    migrate(eng)
    yield eng
    eng.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    """Each storage test runs twice: on an SQLite file and on a real PostgreSQL database."""
    if request.param == "sqlite":
        return sqlite_url
    return fresh_postgres_url(request.getfixturevalue("postgres_server"))


@pytest.fixture
def any_engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    migrate(eng)
    yield eng
    eng.dispose()
