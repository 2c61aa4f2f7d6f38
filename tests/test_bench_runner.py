"""`python -m bench`: each module runs isolated; a failing one becomes an error row, the rest report."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import _git_commit, main
from bench.common import BenchRow, row
from bench.runner import (
    REPO_ROOT,
    TABLE_END,
    TABLE_START,
    discover,
    fmt,
    markdown_table,
    results_name,
    select,
    update_readme,
    with_load,
)

MODULES = {
    "bench_good.py": """
from __future__ import annotations
from dataclasses import dataclass
from bench.common import row
@dataclass
class Plan:  # a dataclass in a bench module needs the module registered while it is imported
    n: int
def run(quick=False):
    n = 10 if quick else 1000
    return [row("good", f"{n} things", 2.0 * n, "things/s", "one at a time", float(n), note="more is better")]
""",
    "bench_raises.py": "def run(quick=False):\n    raise RuntimeError('model file missing')\n",
    "bench_crashes.py": "import os\ndef run(quick=False):\n    os._exit(3)\n",
    "bench_hangs.py": "import time\ndef run(quick=False):\n    time.sleep(60)\n",
    "bench_empty.py": "def run(quick=False):\n    return []\n",
}


@pytest.fixture
def bench_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "bench"
    folder.mkdir()
    for name, source in MODULES.items():
        (folder / name).write_text(source)
    return folder


def test_failing_modules_become_error_rows_and_the_rest_still_report(bench_dir, tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("# Benchmarks\n\nHow to read it.\n")
    code = main(["--quick", "--timeout", "5", "--readme"], bench_dir, tmp_path / "results", readme)
    assert code == 0  # degrade gracefully: error rows, not a crash
    out = capsys.readouterr().out
    assert (
        "| good | 10 things | 20 | things/s | 10 (one at a time) | 2× | more is better; load average " in out
    )
    for area, what in [
        ("raises", "raised"),
        ("crashes", "crashed"),
        ("hangs", "timed out"),
        ("empty", "no rows"),
    ]:
        assert f"| {area} | ERROR: {what} |" in out
    assert "RuntimeError: model file missing" in out
    assert "Machine: " in out and "cores" in out

    (results,) = (tmp_path / "results").glob("*.json")
    doc = json.loads(results.read_text())
    assert doc["quick"] is True and "cores" in doc["machine"]
    by_area = {r["area"]: r for r in doc["rows"]}
    assert by_area["good"]["value"] == 20 and by_area["good"]["ratio"] == 2.0
    assert by_area["raises"]["value"] is None  # NaN is written as null: strict JSON
    assert set(doc["seconds_per_area"]) == {"good", "raises", "crashes", "hangs", "empty"}
    text = readme.read_text()
    assert text.startswith("# Benchmarks\n\nHow to read it.\n") and "| good | 10 things |" in text


def test_strict_exits_non_zero_when_a_module_fails(bench_dir, tmp_path):
    assert main(["--only", "raises", "--strict"], bench_dir, tmp_path / "results", tmp_path / "R.md") == 1
    assert not (tmp_path / "R.md").exists()  # a subset run leaves the README alone by default


def test_only_selects_by_area_and_rejects_unknown_names(bench_dir):
    modules = discover(bench_dir)
    assert [m.stem for m in select(modules, "good,raises")] == ["bench_good", "bench_raises"]
    assert [m.stem for m in select(modules, "bench_good")] == ["bench_good"]
    with pytest.raises(SystemExit, match="no bench module for nope"):
        select(modules, "good,nope")


def test_readme_table_is_replaced_between_markers_not_appended_twice(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("intro\n")
    update_readme(markdown_table([row("a", "x", 1.0, "s")]), "first", readme)
    update_readme(markdown_table([row("a", "y", 2.0, "s")]), "second", readme)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.count(TABLE_START) == 1 == text.count(TABLE_END)
    assert "| a | y | 2 | s |" in text and "| a | x |" not in text and "second" in text


def test_numbers_are_formatted_to_three_significant_figures():
    assert [fmt(v) for v in (0.0, 0.6789, 12.345, 123.4, 12345.6, None)] == [
        "0",
        "0.679",
        "12.3",
        "123",
        "12,346",
        "",
    ]
    assert fmt(math.nan) == "—"
    table = markdown_table([BenchRow("a", "pipe | in name", 1.0, "s")])
    assert "pipe \\| in name" in table


def test_list_names_every_area_of_the_real_bench_folder():
    out = subprocess.run(
        [sys.executable, "-m", "bench", "--list"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == [p.stem.removeprefix("bench_").replace("_", "-") for p in discover()]


def test_commit_says_when_the_working_tree_has_uncommitted_changes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _git_commit() == ""  # not a git checkout
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q"], check=True)
    (tmp_path / "a.py").write_text("x = 1\n")
    subprocess.run([*git, "add", "a.py"], check=True)
    subprocess.run([*git, "commit", "-qm", "a"], check=True)
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert _git_commit() == head
    (tmp_path / "a.py").write_text("x = 2\n")
    assert _git_commit() == head + "+changes"


def test_a_subset_or_quick_run_never_overwrites_the_full_runs_results():
    assert results_name("2026-11-22", "vm", None, False) == "2026-11-22-vm.json"
    assert results_name("2026-11-22", "vm", "app,training", False) == "2026-11-22-vm-app+training.json"
    assert results_name("2026-11-22", "vm", None, True) == "2026-11-22-vm-quick.json"


def test_every_row_says_how_busy_the_machine_was():
    rows = [row("a", "x", 1.0, "s", note="lower is better"), row("a", "y", 2.0, "s")]
    noted = with_load(rows, 0.25, 3.5, 2)
    assert [r.note for r in noted] == [
        "lower is better; load average 0.2 before / 3.5 after on 2 cores",
        "load average 0.2 before / 3.5 after on 2 cores",
    ]
    assert rows[0].note == "lower is better"  # the module's rows are not changed in place
