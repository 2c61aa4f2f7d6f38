"""`make run` with the default base model: the first pair on screen is two SmolLM2-135M-Instruct titles.

The same two steps as `make run` (``prefloop demo``, then ``prefloop app``), timed from the start of the
demo to the pair in the browser; the figure lands in test-artifacts/real_model_first_pair.json.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from sqlmodel import select

from core.config import DEFAULT_BASE
from core.paths import work_dir
from storage.db import session_scope
from storage.models import Candidate, ModelVersion
from testkit.app_server import start_app, stop_app
from testkit.ui import shown_pair
from tests.conftest import REPO

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_make_run_shows_the_default_models_titles(engine, sqlite_url, browser, artifacts, tmp_path):
    started = time.monotonic()
    demo = subprocess.run(
        [sys.executable, "-m", "prefloop.cli", "--db", sqlite_url, "demo", "--first", "2"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert demo.returncode == 0, demo.stderr[-2000:]
    background = int((work_dir(sqlite_url) / "demo-generate.pid").read_text())
    demo_s = time.monotonic() - started
    proc, url = start_app(sqlite_url)
    try:
        page = browser.new_page()
        page.goto(url)
        left, right = shown_pair(page, timeout_ms=60_000)
        first_pair_s = time.monotonic() - started
        page.close()
    finally:
        stop_app(proc)
        os.kill(background, signal.SIGTERM)  # the rest of round 0 is not needed here
    with session_scope(engine) as session:
        rows = session.exec(select(Candidate.text, ModelVersion.base_model).join(ModelVersion)).all()
    # exactly what the model wrote, from the default base
    assert {left, right} <= {text for text, base in rows if base == DEFAULT_BASE}
    assert {base for _, base in rows} == {DEFAULT_BASE}
    figures = {"demo s": round(demo_s, 1), "demo start to first pair s": round(first_pair_s, 1)}
    figures["loadavg"] = os.getloadavg()
    (artifacts / "real_model_first_pair.json").write_text(
        json.dumps({**figures, "pair": [left, right]}, indent=2)
    )
