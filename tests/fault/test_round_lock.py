"""The round lock between real processes: a live holder excludes, a killed one is taken over.

The holder is a separate Python process that takes ``storage.locks.exclusive`` and sleeps; the lock
file is in one work folder, and on PostgreSQL a second "machine" (another work folder, so the file
lock cannot see it) is excluded by the advisory lock.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.errors import PrefloopError
from storage.db import make_engine
from storage.locks import exclusive

pytestmark = pytest.mark.fault
REPO = Path(__file__).resolve().parents[2]
HOLDER = """
import sys, time
from storage.db import make_engine
from storage.locks import exclusive
with exclusive(make_engine(sys.argv[1]), __import__("pathlib").Path(sys.argv[2]), what="a round") as lock:
    lock.describe("round 7")
    print("held", flush=True)
    time.sleep(600)
"""


def hold(url: str, path: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, url, str(path)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "held", proc.stderr.read()
    return proc


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def lock_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'prefloop.db'}"
    from tests.conftest import fresh_postgres_url

    return fresh_postgres_url(request.getfixturevalue("postgres_server"))


def test_a_live_holder_excludes_and_a_killed_one_is_taken_over(lock_url: str, tmp_path: Path) -> None:
    path = tmp_path / "work" / "round.lock"
    engine = make_engine(lock_url)
    holder = hold(lock_url, path)
    try:
        since = json.loads(path.read_text())["since"]
        with pytest.raises(PrefloopError) as err, exclusive(engine, path, what="a round"):
            pytest.fail("took a lock another process holds")
        assert str(err.value).startswith(f"round 7 is being trained by pid {holder.pid} since {since}; wait")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with exclusive(engine, path, what="a round") as lock:  # the kernel freed the dead holder's lock
        assert lock.previous is not None and lock.previous["pid"] == str(holder.pid)
        assert json.loads(path.read_text())["pid"] == str(os.getpid())
    assert path.read_text() == ""  # released cleanly: no holder noted
    with exclusive(engine, path, what="a round") as lock:
        assert lock.previous is None
    engine.dispose()


@pytest.mark.postgres
def test_postgres_excludes_a_holder_on_another_machine(postgres_server: str, tmp_path: Path) -> None:
    from tests.conftest import fresh_postgres_url

    url = fresh_postgres_url(postgres_server)
    holder = hold(url, tmp_path / "machine-a" / "round.lock")
    engine = make_engine(url)
    try:
        busy = r"^a round is in progress in another process from .* since "
        with (
            pytest.raises(PrefloopError, match=busy),
            exclusive(engine, tmp_path / "machine-b" / "round.lock", what="a round"),
        ):
            pytest.fail("two machines trained at once")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the server ends the dead client's session, and its advisory lock with it, once it sees the socket close
    for attempt in range(50):
        try:
            with exclusive(engine, tmp_path / "machine-b" / "round.lock", what="a round"):
                break
        except PrefloopError:
            assert attempt < 49, "the dead holder's advisory lock was never released"
            time.sleep(0.2)
    engine.dispose()
