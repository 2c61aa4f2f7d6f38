"""Every artifact folder is derived from its database, never from the source tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import Config
from core.errors import PrefloopError
from core.paths import REPO_ROOT, work_dir


def test_an_sqlite_file_keeps_its_artifacts_beside_it(tmp_path: Path, monkeypatch) -> None:
    assert work_dir(f"sqlite:///{tmp_path / 'a.db'}") == tmp_path / "a-work"
    assert work_dir(f"sqlite:///{tmp_path / 'b.db'}") == tmp_path / "b-work"  # same folder, another db
    monkeypatch.chdir(tmp_path)
    assert work_dir("sqlite:///rel/c.db") == tmp_path / "rel" / "c-work"  # relative to where it runs


def test_a_server_database_gets_a_folder_named_by_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PREFLOOP_HOME", str(tmp_path))
    url = "postgresql+psycopg2://me:secret@db.example:5433/labels"
    assert work_dir(url) == tmp_path / "postgresql-db.example-5433-labels"
    assert work_dir(url.replace("/labels", "/other")) != work_dir(url)
    monkeypatch.delenv("PREFLOOP_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert work_dir(url).parent == tmp_path / "xdg" / "prefloop"


def test_the_config_follows_the_database_and_not_the_checkout(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PREFLOOP_DB", f"sqlite:///{tmp_path / 'project.db'}")
    assert Config().var_dir == tmp_path / "project-work"
    assert Config(db=f"sqlite:///{tmp_path / 'x' / 'other.db'}").var_dir == tmp_path / "x" / "other-work"
    assert REPO_ROOT not in Config().var_dir.parents


def test_an_in_memory_database_has_no_work_folder() -> None:
    with pytest.raises(PrefloopError, match="in-memory database has no folder"):
        work_dir("sqlite://")
