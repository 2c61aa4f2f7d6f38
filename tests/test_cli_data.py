"""The data commands end to end: typer's runner for the flow, a real process for exit code and error."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.errors import PrefloopError
from prefloop.cli import app

REPO = Path(__file__).resolve().parent.parent
PREFLOOP = REPO / ".venv/bin/prefloop"
runner = CliRunner()


def run(db: str, *args: str):
    result = runner.invoke(app, ["--db", db, *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_done_when_flow_through_the_cli(sqlite_url, tmp_path):
    run(sqlite_url, "init")
    ideas = ["prompts", "import", str(REPO / "data/youtube-titles/ideas.csv"), "--column", "Idea"]
    run(sqlite_url, *ideas, "--template", "youtube-title")
    labels = str(REPO / "data/youtube-titles/idea-title_pairs-preferences.csv")
    run(sqlite_url, "labels", "import", labels, "--template", "youtube-title")
    status = json.loads(run(sqlite_url, "status", "--json").stdout)
    assert sum(status["prompts"].values()) == 114 and status["comparisons"]["train"] == 1140
    assert status["judgments"] == {"train": 1140, "eval": 0}
    assert status["model_versions"] == ["imported:idea-title_pairs-preferences.csv"]
    assert {"candidates", "rounds"} <= set(status)
    out = tmp_path / "trl"
    shown = run(sqlite_url, "export", "--format", "trl", "--out", str(out)).stdout
    assert f"eval_prompt {10 * status['prompts']['eval']}" in shown  # the exclusions are printed
    train = out.joinpath("train.jsonl").read_text(encoding="utf-8").splitlines()
    validation = out.joinpath("validation.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(train) + len(validation) == 10 * status["prompts"]["train"]
    table = run(sqlite_url, "status").stdout
    assert "imported:idea-title_pairs" in table and "judgments" in table
    run(sqlite_url, "export", "--format", "judgments", "--out", str(tmp_path / "raw"))
    assert len(tmp_path.joinpath("raw/judgments.jsonl").read_text(encoding="utf-8").splitlines()) == 1140
    run(sqlite_url, "export", "--format", "llamafactory", "--out", str(tmp_path / "lf"))
    assert (
        json.loads(tmp_path.joinpath("lf/dataset_info.json").read_text())["prefloop_dpo"]["ranking"] is True
    )


def test_annotators_add_prints_the_token_once_and_it_signs_in(sqlite_url):
    from storage.auth import authenticate
    from storage.db import make_engine, session_scope

    token = run(sqlite_url, "annotators", "add", "alice", "--admin").stdout.strip().splitlines()[-1]
    with session_scope(make_engine(sqlite_url)) as s:
        assert authenticate(s, "alice", token).role.value == "admin"
    assert "alice" in run(sqlite_url, "annotators", "list").stdout
    with pytest.raises(PrefloopError, match="already exists"):
        runner.invoke(app, ["--db", sqlite_url, "annotators", "add", "alice"], catch_exceptions=False)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["export", "--format", "csv"], "--format 'csv': use one of trl, llamafactory, judgments, arena"),
        (["labels", "import", "x.json", "--format", "yaml"], "--format 'yaml': use one of"),
        (["prompts", "import", "x.txt", "--split", "test"], "--split 'test': use train or eval"),
        (["export", "--validation-share", "1.5"], "--validation-share 1.5"),
        (["prompts", "import", "missing.txt"], "missing.txt: cannot read"),
    ],
)
def test_bad_options_say_what_to_use(sqlite_url, args, message):
    with pytest.raises(PrefloopError, match=message.replace("(", r"\(")):
        runner.invoke(app, ["--db", sqlite_url, *args], catch_exceptions=False)


def test_real_process_exits_1_with_one_error_line_and_leaves_the_database_alone(tmp_path):
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    bad = tmp_path / "labels.csv"
    bad.write_text("idea,title_a,title_b,title_b_preferred\ncats,A,B,1\ncats,A,C,yes\n", encoding="utf-8")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PREFLOOP_VAR": str(tmp_path / "var")}
    failed = subprocess.run(
        [PREFLOOP, "--db", db, "labels", "import", str(bad)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert failed.returncode == 1
    assert failed.stderr.strip().splitlines() == [
        f"error: {bad}:3: field title_b_preferred: 'yes' is not 0 or 1 (1 = title_b chosen); fix the value"
    ]
    status = subprocess.run(
        [PREFLOOP, "--db", db, "status", "--json"], capture_output=True, text=True, env=env, timeout=120
    )
    assert status.returncode == 0 and json.loads(status.stdout)["judgments"] == {"train": 0, "eval": 0}
