"""`prefloop demo` (what `make run` calls first) and `prefloop app`'s command line."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from sqlmodel import func, select
from typer.testing import CliRunner

from core.net import free_port
from core.paths import work_dir
from prefloop.cli import app
from prefloop.commands.annotate import streamlit_argv
from storage.db import session_scope
from storage.models import Candidate, Comparison, Prompt, Split
from testkit.app_server import stop_app, wait_healthy
from tests.conftest import REPO


def counts(engine) -> tuple[int, int, int]:
    with session_scope(engine) as session:
        return tuple(session.exec(select(func.count(t.id))).one() for t in (Prompt, Candidate, Comparison))


@pytest.mark.slow
def test_demo_loads_seed_ideas_and_round_zero_once(engine, sqlite_url):
    runner = CliRunner()
    args = ["--db", sqlite_url, "--set", "model.base=tiny", "--set", "generation.n=2", "demo", "--wait"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    prompts, candidates, pairs = counts(engine)
    assert prompts == 114 and 0 < candidates <= 2 * 114 and 0 < pairs <= candidates // 2
    assert "round 0:" in first.output
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "nothing to generate" in again.output and "0 added, 114 already there" in again.output
    assert counts(engine) == (prompts, candidates, pairs)


def prompts_with_candidates(engine) -> set[int]:
    with session_scope(engine) as session:
        return set(session.exec(select(Candidate.prompt_id)))


@pytest.mark.slow
def test_demo_writes_the_first_prompts_then_the_rest_in_the_background(engine, sqlite_url, tmp_path):
    args = ["--db", sqlite_url, "--set", "model.base=tiny", "--set", "generation.n=2"]
    out = CliRunner().invoke(app, [*args, "demo", "--first", "3"])
    assert out.exit_code == 0, out.output
    with session_scope(engine) as session:
        train = [
            p.id for p in session.exec(select(Prompt).where(Prompt.split == Split.train).order_by(Prompt.id))
        ]
    assert prompts_with_candidates(engine) == set(train[:3])
    assert f"the other {len(train) - 3} prompts are being written in the background" in out.output
    deadline = time.monotonic() + 240
    while prompts_with_candidates(engine) != set(train) and time.monotonic() < deadline:
        time.sleep(1)
    log = (work_dir(sqlite_url) / "demo-generate.log").read_text()  # the database's work folder
    assert prompts_with_candidates(engine) == set(train), log
    assert f"{len(train) - 3} prompts" in log  # the background run wrote only the missing ones
    with session_scope(engine) as session:
        per_prompt = session.exec(
            select(Candidate.prompt_id, func.count(Candidate.id)).group_by(Candidate.prompt_id)
        )
        assert all(count <= 2 for _, count in per_prompt)


def test_app_runs_streamlit_headless_without_usage_stats():
    argv = streamlit_argv("0.0.0.0", 9999)
    assert argv[:2] == ["streamlit", "run"] and argv[2].endswith("annotate_app/main.py")
    options = dict(zip(argv[3::2], argv[4::2], strict=True))
    assert options["--server.headless"] == "true" and options["--browser.gatherUsageStats"] == "false"
    assert options["--server.address"] == "0.0.0.0" and options["--server.port"] == "9999"
    assert options["--logger.hideWelcomeMessage"] == "true", "prefloop prints the URL itself"


def test_the_local_user_server_accepts_only_loopback_host_names():
    argv = streamlit_argv("127.0.0.1", 9999, local_user=True)
    hosts = [value for flag, value in zip(argv, argv[1:], strict=False) if flag == "--server.allowedHosts"]
    assert hosts == ["localhost", "127.0.0.1", "::1"]
    assert "--server.allowedHosts" not in streamlit_argv("127.0.0.1", 9999), "sign-in only: any Host"


def test_app_prints_its_url_once(sqlite_url):
    port = free_port()
    cmd = [sys.executable, "-m", "prefloop.cli", "--db", sqlite_url, "app", "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc)
    finally:
        stop_app(proc)
    output = proc.stdout.read()
    assert output.count(f"127.0.0.1:{port}") == 1, output
    assert f"Annotation app on http://127.0.0.1:{port}" in output
