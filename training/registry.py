"""Training runs and adapter versions: a crash never leaves a half-written adapter or half-registered version.

Order of events for one run:
1. ``start_run``: a TrainingRun row with status ``running`` (committed, so the dashboard sees it).
2. Training writes into a staging directory ``var/adapters/.staging-<name>-*`` (``staging_dir``).
3. ``publish_adapter``: ``os.rename`` of the complete directory to ``var/adapters/<name>``, then ONE
   transaction creates the ModelVersion and completes the run. A kill between the rename and the commit
   leaves an unregistered directory, which the next attempt removes before publishing again.
A run killed outright stays ``running``; ``start_run`` marks such leftovers ``failed`` ("interrupted").
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlmodel import select

from core.errors import PrefloopError
from storage.db import session_scope
from storage.models import ModelVersion, RunStatus, TrainingRun, VersionKind, utcnow
from storage.repo import get_or_create_round
from storage.versions import round_of

STAGING_PREFIX = ".staging-"
CRASH_ENV = "PREFLOOP_CRASH_AT"  # tests only: the process SIGKILLs itself at the named point


def crash_point(name: str) -> None:
    """A real SIGKILL at a named point when ``PREFLOOP_CRASH_AT`` names it (the crash/re-run tests)."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def adapters_root(var_dir: Path) -> Path:
    return Path(var_dir) / "adapters"


def latest_adapter(engine: Engine) -> ModelVersion | None:
    """The registered "round-N" adapter with the highest N (None before the first round)."""
    with session_scope(engine) as session:
        versions = session.exec(select(ModelVersion).where(ModelVersion.kind == VersionKind.adapter)).all()
    numbered = [(round_of(v.name), v) for v in versions if round_of(v.name) is not None]
    return max(numbered, key=lambda item: item[0])[1] if numbered else None


def remove_stale_staging(root: Path) -> list[Path]:
    """Delete staging directories a killed run left behind (one train-round runs at a time)."""
    stale = sorted(root.glob(f"{STAGING_PREFIX}*")) if root.is_dir() else []
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


@contextmanager
def staging_dir(root: Path, name: str) -> Iterator[Path]:
    """A fresh directory beside the final place (same filesystem, so the rename is atomic)."""
    root.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{name}-", dir=root))
    path.chmod(0o755)  # mkdtemp makes it private; a vLLM server run by another user must read it
    try:
        yield path
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise


def start_run(engine: Engine, *, round_id: int, config: dict[str, Any], data_hash: str) -> int:
    """Mark runs left ``running`` by a dead process as failed, then open a new ``running`` run."""
    with session_scope(engine, write=True) as session:
        for stale in session.exec(select(TrainingRun).where(TrainingRun.status == RunStatus.running)):
            stale.status = RunStatus.failed
            stale.error = "interrupted: the training process ended without finishing (killed or crashed)"
            stale.finished_at = utcnow()
            session.add(stale)
        get_or_create_round(session, round_id)
        run = TrainingRun(round_id=round_id, config=config, data_hash=data_hash)
        session.add(run)
        session.flush()
        return run.id


def save_metrics(engine: Engine, run_id: int, metrics: list[dict[str, Any]]) -> None:
    """Store the per-step rows so far (called at each logging step: the dashboard follows a live run)."""
    with session_scope(engine, write=True) as session:
        run = session.get(TrainingRun, run_id)
        run.metrics = list(metrics)
        session.add(run)


def fail_run(engine: Engine, run_id: int, error: str) -> None:
    with session_scope(engine, write=True) as session:
        run = session.get(TrainingRun, run_id)
        run.status = RunStatus.failed
        run.error = error[:4000]
        run.finished_at = utcnow()
        session.add(run)


def publish_adapter(
    engine: Engine,
    *,
    run_id: int,
    staging: Path,
    root: Path,
    name: str,
    base_model: str,
    parent_id: int | None,
    metrics: list[dict[str, Any]],
    resolved: dict[str, Any] | None = None,
) -> ModelVersion:
    """Rename the complete adapter into ``root/name`` and register it with its run, in one transaction."""
    if not (staging / "adapter_config.json").is_file():
        raise PrefloopError(f"{staging}: no adapter_config.json; the training run did not save an adapter")
    final = root / name
    with session_scope(engine) as session:
        if session.exec(select(ModelVersion).where(ModelVersion.name == name)).first() is not None:
            raise PrefloopError(f"model version {name!r} is already registered; nothing to publish")
    for file in staging.iterdir():  # readable by a vLLM server running as another user
        file.chmod(0o644)
    if final.exists():  # renamed by an attempt that died before its commit: never registered, never served
        shutil.rmtree(final)
    staging.rename(final)
    crash_point("after-rename")
    try:
        with session_scope(engine, write=True) as session:
            version = ModelVersion(
                name=name,
                kind=VersionKind.adapter,
                base_model=base_model,
                adapter_path=str(final.resolve()),
                parent_id=parent_id,
                training_run_id=run_id,
            )
            session.add(version)
            run = session.get(TrainingRun, run_id)
            run.status = RunStatus.completed
            run.adapter_path = version.adapter_path
            run.metrics = list(metrics)
            run.config = {**run.config, "resolved": resolved or {}}
            run.finished_at = utcnow()
            session.add(run)
            session.flush()
            return version
    except BaseException:
        shutil.rmtree(final, ignore_errors=True)
        raise
