"""Annotation app speed, each figure against a baseline measured in the same run:

- Start-up: ``prefloop app`` process start -> first pair rendered in headless Chromium (local user, no
  sign-in), vs a one-line Streamlit app started the same way -> its text rendered.
- Click -> next pair rendered: median over >= 50 keyboard judgments in Chromium (Playwright), vs the
  same key press on a one-button Streamlit app -> its counter re-rendered (Streamlit's own round trip).
- The same key press while ``prefloop train-round`` trains on the same cores (a real DPO round on
  labelled seed ideas), against the same page measured just before the round started.
- Storage: ``next_pair`` + ``record_judgment`` p99 with 32 annotator threads labelling at once on one
  SQLite file (the Streamlit server is one process with a thread per session), each deciding every ~1 s,
  vs 1 annotator alone; and the same 32 with no pause (throughput). After each run every pair must hold
  exactly its overlap of decisions (zero lost or duplicated) or the benchmark fails.

The server launcher and the browser steps are the e2e tests' own (``tests/e2e``), so the benchmark
drives the app exactly as the tests do.
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from sqlmodel import select

from bench.common import BenchRow, row
from core.config import AnnotateConfig
from core.net import free_port
from labelling.assignment import next_pair, record_judgment
from storage import queries
from storage.db import make_engine, migrate, session_scope
from storage.models import Choice, Judgment, TrainingRun
from testkit.annotate_seed import add_annotator, seed_pairs
from testkit.app_server import CHROMIUM, CHROMIUM_ARGS, start_app, stop_app, wait_healthy
from testkit.train_seed import seed_label_subset
from testkit.ui import blur, shown_pair

AREA = "app"
SETTINGS = AnnotateConfig(overlap_train=1, overlap_eval=2, eval_share=0.2, lease_seconds=300)
THINK_S = 1.0  # a very fast annotator; people take several seconds per pair

HELLO_APP = 'import streamlit as st\nst.text("hello")\n'
COUNTER_APP = """import streamlit as st
st.session_state.setdefault("n", 0)
if st.button("Next", shortcut="1"):
    st.session_state.n += 1
st.text(f"count {st.session_state.n}")
"""


def _fresh_db(folder: Path, name: str):
    url = f"sqlite:///{folder / name}.db"
    engine = make_engine(url)
    migrate(engine)
    return url, engine


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# ---- storage -------------------------------------------------------------------------------------------


def _label_loop(
    engine, annotator_id: int, latencies: list[float], start: threading.Barrier, think_s: float, seed: int
) -> None:
    rng = random.Random(seed)
    start.wait()
    while True:
        if think_s:
            time.sleep(rng.uniform(0.5, 1.5) * think_s)
        t0 = time.perf_counter()
        got = next_pair(engine, annotator_id, SETTINGS)
        if got is None:
            return
        record_judgment(
            engine,
            annotator_id,
            got.comparison_id,
            Choice.a,
            left=got.left,
            settings=SETTINGS,
            ms_to_decide=1,
        )
        latencies.append((time.perf_counter() - t0) * 1000)


@dataclass
class StorageRun:
    latencies_ms: list[float]
    seconds: float
    verdict: str

    @property
    def per_second(self) -> float:
        return len(self.latencies_ms) / self.seconds


def _storage_run(folder: Path, name: str, annotators: int, pairs: int, think_s: float) -> StorageRun:
    """``annotators`` threads label ``pairs`` train pairs (+ a fifth as many eval pairs) to the end;
    then every pair must hold exactly its overlap of decisions and nobody a pair twice."""
    _, engine = _fresh_db(folder, name)
    seed_pairs(engine, train=pairs, eval=pairs // 5)
    ids = [add_annotator(engine, f"a{i}") for i in range(annotators)]
    per_thread: list[list[float]] = [[] for _ in ids]
    barrier = threading.Barrier(len(ids))
    threads = [
        threading.Thread(target=_label_loop, args=(engine, ann, lat, barrier, think_s, ann))
        for ann, lat in zip(ids, per_thread, strict=True)
    ]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    with session_scope(engine) as session:
        current = list(session.exec(select(Judgment).where(queries.current())))
    engine.dispose()
    twice = sum(n > 1 for n in Counter((j.annotator_id, j.comparison_id) for j in current).values())
    decisions = Counter(j.comparison_id for j in current)
    expected_total = pairs * SETTINGS.overlap_train + (pairs // 5) * min(SETTINGS.overlap_eval, annotators)
    verdict = f"{len(current)} judgments (expected {expected_total}), {twice} duplicated"
    if twice or len(current) != expected_total or max(decisions.values()) > SETTINGS.overlap_eval:
        raise RuntimeError(f"storage concurrency check failed: {verdict}")
    return StorageRun([x for lat in per_thread for x in lat], seconds, verdict)


def storage_rows(folder: Path, quick: bool) -> list[BenchRow]:
    """Paced: 32 annotators who each decide every ~THINK_S seconds (faster than any person) - the
    latency one of them sees. Stress: the same 32 with no pause at all - throughput vs one alone."""
    per_annotator = 12 if quick else 30
    alone = _storage_run(folder, "alone", 1, per_annotator * 4, THINK_S)
    paced = _storage_run(folder, "paced", 32, per_annotator * 32, THINK_S)
    alone_flat = _storage_run(folder, "alone-stress", 1, per_annotator * 4, 0.0)
    stress = _storage_run(folder, "stress", 32, per_annotator * 32, 0.0)
    p99 = _percentile(paced.latencies_ms, 0.99)
    return [
        row(
            AREA,
            f"next_pair + record_judgment p99, 32 annotators deciding every ~{THINK_S:g} s (SQLite, threads)",
            round(p99, 2),
            "ms p99",
            "1 annotator alone, same pace",
            round(_percentile(alone.latencies_ms, 0.99), 2),
            note=(
                f"lower is better; target <= 20 ms; n={len(paced.latencies_ms)}; median "
                f"{statistics.median(paced.latencies_ms):.2f} ms; {paced.verdict}, none lost"
            ),
        ),
        row(
            AREA,
            "judgments/s, 32 annotators with no pause at all (SQLite, threads)",
            round(stress.per_second, 1),
            "judgments/s",
            "1 annotator with no pause",
            round(alone_flat.per_second, 1),
            note=(
                f"higher is better (writes are serialised; reads and Python work overlap); p99 latency "
                f"{_percentile(stress.latencies_ms, 0.99):.0f} ms is queueing behind 31 others; "
                f"{stress.verdict}, none lost"
            ),
        ),
    ]


# ---- browser -------------------------------------------------------------------------------------------


def _streamlit_script(folder: Path, name: str, source: str) -> Path:
    path = folder / f"{name}.py"
    path.write_text(source, encoding="utf-8")
    return path


def _start_plain_streamlit(script: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", str(script), "--server.headless", "true"]
    cmd += [
        "--server.address",
        "127.0.0.1",
        "--server.port",
        str(port),
        "--browser.gatherUsageStats",
        "false",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc)
    return proc, url


def _wait_text(page, text: str) -> None:
    page.get_by_text(text, exact=True).wait_for(timeout=30_000)


def _startup_s(browser, start, ready) -> float:
    """Seconds from process start to ``ready(page)`` returning (the browser is already running)."""
    t0 = time.perf_counter()
    proc, url = start()
    try:
        page = browser.new_page()
        page.goto(url)
        ready(page)
        seconds = time.perf_counter() - t0
        page.close()
    finally:
        stop_app(proc)
    return seconds


def _click_ms(clicks: int, settle, press_and_wait) -> list[float]:
    """Milliseconds from each key press to the next screen, with the page settled before each press."""
    times = []
    for _ in range(clicks):
        before = settle()
        t0 = time.perf_counter()
        press_and_wait(before)
        times.append((time.perf_counter() - t0) * 1000)
    return times


def browser_rows(folder: Path, quick: bool) -> list[BenchRow]:
    from playwright.sync_api import sync_playwright

    repeats = 1 if quick else 3
    clicks = 50 if quick else 80
    db_url, engine = _fresh_db(folder, "browser")
    seed_pairs(engine, train=clicks + 10 + 2 * repeats)
    hello = _streamlit_script(folder, "hello", HELLO_APP)
    counter = _streamlit_script(folder, "counter", COUNTER_APP)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        app_starts = [_startup_s(browser, lambda: start_app(db_url), shown_pair) for _ in range(repeats)]
        hello_starts = [
            _startup_s(browser, lambda: _start_plain_streamlit(hello), lambda p: _wait_text(p, "hello"))
            for _ in range(repeats)
        ]

        proc, url = start_app(db_url)
        try:
            page = browser.new_page()
            page.goto(url)
            shown_pair(page)
            blur(page)

            def press_app(before: tuple[str, str]) -> None:
                page.keyboard.press("1")
                shown_pair(page, other_than=before, ready=False)  # the next pair on screen

            app_clicks = _click_ms(clicks, lambda: shown_pair(page), press_app)
        finally:
            stop_app(proc)

        proc, url = _start_plain_streamlit(counter)
        try:
            page = browser.new_page()
            page.goto(url)
            _wait_text(page, "count 0")
            state = {"n": 0}

            def settle_counter() -> int:
                _wait_text(page, f"count {state['n']}")
                return state["n"]

            def press_counter(before: int) -> None:
                page.keyboard.press("1")
                state["n"] = before + 1
                _wait_text(page, f"count {state['n']}")

            base_clicks = _click_ms(clicks, settle_counter, press_counter)
        finally:
            stop_app(proc)
        browser.close()

    start_app_s, start_hello_s = statistics.median(app_starts), statistics.median(hello_starts)
    return [
        row(
            AREA,
            "start-up: `prefloop app` process start -> first pair rendered (Chromium)",
            round(start_app_s, 2),
            "s",
            "one-line Streamlit app -> text rendered",
            round(start_hello_s, 2),
            note=f"lower is better; target <= 3 s; median of {repeats}; includes `prefloop` CLI start",
        ),
        row(
            AREA,
            f"key press -> next pair rendered, median of {clicks} judgments (Chromium)",
            round(statistics.median(app_clicks), 1),
            "ms median",
            "key press -> counter re-rendered, one-button Streamlit app",
            round(statistics.median(base_clicks), 1),
            note=f"lower is better; target <= 300 ms; p90 {_percentile(app_clicks, 0.9):.0f} ms "
            f"(baseline p90 {_percentile(base_clicks, 0.9):.0f} ms)",
        ),
    ]


# ---- while a training round runs ------------------------------------------------------------------------


def _prefloop(db_url: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "prefloop.cli", "--db", db_url, *args]


def _start_train_round(folder: Path, ideas: int) -> tuple[subprocess.Popen, object]:
    """``prefloop train-round`` on its own database of ``ideas`` labelled seed ideas (10 pairs each), at
    the same priority as the app: an operator training while people label. Returns once it trains."""
    db_url, engine = _fresh_db(folder, "train")
    labels = seed_label_subset(folder / "labels.csv", ideas)
    subprocess.run(
        _prefloop(db_url, "labels", "import", str(labels), "--template", "youtube-title", "--split", "train"),
        check=True,
        capture_output=True,
    )
    proc = subprocess.Popen(
        _prefloop(db_url, "train-round"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        with session_scope(engine) as session:
            if session.exec(select(TrainingRun.id)).first() is not None:
                return proc, engine
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError("train-round did not start training within 300 s")


def under_training_rows(folder: Path, quick: bool) -> list[BenchRow]:
    """Key press -> next pair while ``prefloop train-round`` runs on the same cores (the usual case:
    people label while the operator trains), against the same page in the same run before training."""
    from playwright.sync_api import sync_playwright

    clicks = 40 if quick else 80
    db_url, engine = _fresh_db(folder, "labelling")
    seed_pairs(engine, train=3 * clicks)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        proc, url = start_app(db_url)
        try:
            page = browser.new_page()
            page.goto(url)
            shown_pair(page)
            blur(page)

            def press(before: tuple[str, str]) -> None:
                page.keyboard.press("1")
                shown_pair(page, other_than=before, ready=False)  # the next pair on screen

            settle = lambda: shown_pair(page)  # noqa: E731
            quiet = _click_ms(clicks, settle, press)
            trainer, train_engine = _start_train_round(folder, ideas=24 if quick else 48)
            try:
                loads, loaded = [], []
                while len(loaded) < clicks and trainer.poll() is None:
                    loaded += _click_ms(1, settle, press)
                    loads.append(os.getloadavg()[0])
                still_training = trainer.poll() is None
            finally:
                trainer.kill()
                trainer.wait()
                train_engine.dispose()
        finally:
            stop_app(proc)
        browser.close()
    if len(loaded) < clicks // 2:
        raise RuntimeError(f"train-round ended after {len(loaded)} key presses: give it more ideas")
    return [
        row(
            AREA,
            f"key press -> next pair rendered while `prefloop train-round` runs, median of {len(loaded)} "
            "(Chromium)",
            round(statistics.median(loaded), 1),
            "ms median",
            f"same page, same run, before training started (median of {clicks})",
            round(statistics.median(quiet), 1),
            note=(
                "lower is better; target <= 300 ms median, p90 <= 500 ms; "
                f"p90 {_percentile(loaded, 0.9):.0f} ms, max {max(loaded):.0f} ms "
                f"(before training: p90 {_percentile(quiet, 0.9):.0f} ms); "
                f"train-round still training at the end: {still_training}; 1-min load average during "
                f"{min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cores"
            ),
        )
    ]


def run(quick: bool = False) -> list[BenchRow]:
    with tempfile.TemporaryDirectory(prefix="bench-app-") as tmp:
        folder = Path(tmp)
        return storage_rows(folder, quick) + browser_rows(folder, quick) + under_training_rows(folder, quick)


if __name__ == "__main__":
    if "--under-training" in sys.argv:  # this row alone (minutes), e.g. while profiling the page
        with tempfile.TemporaryDirectory(prefix="bench-app-") as tmp:
            rows = under_training_rows(Path(tmp), quick="--quick" in sys.argv)
    else:
        rows = run(quick="--quick" in sys.argv)
    for r in rows:
        print(r)
