"""End to end, Dashboard and Compare in headless Chromium at 1280×800 and 390×844 (screenshots in
test-artifacts/), on the real ``prefloop app`` server and the real tiny model."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import update
from sqlmodel import select

from core.config import AnnotateConfig, ReportConfig
from core.paths import work_dir
from evaluation.report import write_report
from labelling.assignment import record_judgment
from storage.db import session_scope
from storage.models import (
    Annotator,
    Candidate,
    Choice,
    Comparison,
    Judgment,
    ModelVersion,
    Prompt,
    Purpose,
    RunStatus,
    Split,
    TrainingRun,
    VersionKind,
    prompt_key,
    text_hash,
    utcnow,
)
from storage.repo import get_or_create_candidate, get_or_create_comparison, get_or_create_version
from testkit.annotate_seed import seed_pairs
from testkit.app_server import start_app, stop_app
from testkit.ui import TIMEOUT_MS
from tests.e2e.conftest import add_people

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
GENERATION_TIMEOUT_MS = 120_000


def _eval_prompt(session, text: str) -> Prompt:
    prompt = Prompt(text=text, normalized_hash=text_hash(prompt_key(text)), split=Split.eval, raw=text)
    session.add(prompt)
    session.flush()
    return prompt


def seed_history(engine, adapter_path: str = "unused") -> None:
    """What a Dashboard shows after a round: base vs round-1 eval pairs judged by two people over two
    hours, and a training run whose validation loss was logged twice."""
    add_people(engine)
    seed_pairs(engine, train=6)  # round 0, still being labelled
    with session_scope(engine, write=True) as session:
        base = get_or_create_version(session, "base", VersionKind.base, "tiny")
        run = TrainingRun(
            round_id=0,
            status=RunStatus.completed,
            metrics=[
                {"step": s, "loss": 0.69 * 0.96**s, "rewards/accuracies": min(0.5 + s / 80, 0.9)}
                for s in range(5, 45, 5)
            ]
            + [
                {"step": 20, "eval_loss": 0.6, "eval_rewards/accuracies": 0.62},
                {"step": 40, "eval_loss": 0.52, "eval_rewards/accuracies": 0.7},
            ],
        )
        session.add(run)
        session.flush()
        tuned = get_or_create_version(
            session,
            "round-1",
            VersionKind.adapter,
            "tiny",
            adapter_path=adapter_path,
            parent_id=base.id,
            training_run_id=run.id,
        )
        pairs = []
        for i in range(12):
            prompt = _eval_prompt(session, f"A held-out video idea number {i}")
            old, _ = get_or_create_candidate(session, prompt, base, f"Base title for idea {i}")
            new, _ = get_or_create_candidate(session, prompt, tuned, f"A catchier round-1 title for idea {i}")
            pairs.append((get_or_create_comparison(session, old, new, Purpose.eval)[0], old))
        ids = {a.name: a.id for a in session.exec(select(Annotator))}
    start = utcnow() - timedelta(hours=3)
    ms = {
        "alice": [1200 + 700 * (i % 4) for i in range(12)],
        "bob": [2500 + 1900 * (i % 5) for i in range(12)],
    }
    for i, (comp, old) in enumerate(pairs):
        for who, offset in (("alice", 0), ("bob", 3)):
            wins_new = (i + offset) % 4 != 0
            choice = Choice.b if (comp.candidate_a_id == old.id) == wins_new else Choice.a
            judgment = record_judgment(
                engine,
                ids[who],
                comp.id,
                choice,
                left="a" if i % 2 else "b",
                ms_to_decide=ms[who][i],
                settings=AnnotateConfig(),
            )
            with session_scope(engine, write=True) as session:  # spread the decisions over two hours
                when = start + timedelta(minutes=9 * i + offset)
                session.exec(update(Judgment).where(Judgment.id == judgment.id).values(created_at=when))


_MAIN_HEIGHT_JS = """() => {
    const main = document.querySelector("[data-testid='stMain']");
    return main ? main.scrollHeight : document.body.scrollHeight;
}"""
_CLIPPED_TABLES_JS = """() => [...document.querySelectorAll("[data-testid='stDataFrame'] .dvn-scroller")]
    .filter((el) => el.scrollWidth > el.clientWidth + 1).length"""


def screenshots(page: Page, path: Path) -> None:
    """The first screen as a person sees it (``path``), and the whole page (``*-full.png``): Streamlit
    scrolls inside its main area, so Playwright's full_page alone stops at the viewport."""
    page.wait_for_timeout(300)
    page.screenshot(path=path)
    size = page.viewport_size
    page.set_viewport_size(
        {"width": size["width"], "height": max(page.evaluate(_MAIN_HEIGHT_JS), size["height"])}
    )
    page.wait_for_timeout(500)
    page.screenshot(path=path.with_name(f"{path.stem}-full.png"))
    page.set_viewport_size(size)


def external_requests(page: Page, base_url: str) -> list[str]:
    seen: list[str] = []
    page.on("request", lambda req: seen.append(req.url) if not req.url.startswith(base_url) else None)
    return seen


def test_dashboard_draws_points_bars_throughput_and_fits_desktop_and_phone(
    engine, sqlite_url, browser, artifacts, tmp_path
):
    seed_history(engine)
    write_report(engine, work_dir(sqlite_url) / "report", ReportConfig())  # where the app's config looks
    proc, url = start_app(sqlite_url)
    try:
        for name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
            page = browser.new_page(viewport=viewport)
            outside = external_requests(page, url)
            page.goto(f"{url}/dashboard")
            # the first visit imports pandas and matplotlib: seconds on a loaded machine
            expect(page.get_by_role("heading", name="Win rates")).to_be_visible(timeout=GENERATION_TIMEOUT_MS)
            # throughput, time to decide, the run's loss and reward accuracy, win rates
            figures = page.locator("[data-testid='stImage'] img")
            expect(figures).to_have_count(5, timeout=TIMEOUT_MS)
            expect(page.get_by_text("the unit is item: one prompt", exact=False)).to_be_visible()
            if viewport is DESKTOP:
                expect(page.locator("[data-testid='stDataFrame'] .dvn-scroller")).to_have_count(5)
                assert page.evaluate(_CLIPPED_TABLES_JS) == 0, "every column of every table is on screen"
            for img in figures.all():
                box = img.bounding_box()
                assert box["width"] <= viewport["width"], "figures scale to the screen"
            page.wait_for_timeout(300)
            screenshots(page, artifacts / f"dashboard-{name}.png")
            assert outside == [], f"the page fetched {outside}"
            page.close()
    finally:
        stop_app(proc)


@pytest.fixture(scope="module")
def random_adapter(tmp_path_factory) -> str:
    from models.catalog import TINY_DIR
    from testkit.demo_adapter import save_random_adapter

    return str(save_random_adapter(TINY_DIR, tmp_path_factory.mktemp("adapter") / "lora", seed=1))


def _answers(page: Page) -> tuple[str, str]:
    boxes = [page.locator(f".st-key-answer_{side} [data-testid='stText']") for side in "ab"]
    for box in boxes:
        expect(box).to_have_count(1, timeout=GENERATION_TIMEOUT_MS)
    return boxes[0].inner_text(), boxes[1].inner_text()


def test_compare_arena_first_click_blind_vote_reveal_and_follow_up(
    engine, sqlite_url, browser, artifacts, random_adapter
):
    seed_history(engine, random_adapter)
    proc, url = start_app(sqlite_url)  # make run's mode: the local admin, no token
    try:
        page = browser.new_page(viewport=DESKTOP)
        outside = external_requests(page, url)
        page.goto(f"{url}/compare")
        expect(page.get_by_text("A blind arena", exact=False)).to_be_visible(timeout=TIMEOUT_MS)
        page.get_by_label("Prompt (or the idea, with a template)").fill("Baking sourdough bread at home")
        page.get_by_role("button", name="Generate").click()  # no blur first: the first click counts
        left, right = _answers(page)
        expect(page.get_by_role("button", name="Both bad")).to_be_visible(timeout=TIMEOUT_MS)
        expect(page.locator(".st-key-answer_a [data-testid='stCaptionContainer']")).to_have_text("A")
        screenshots(page, artifacts / "compare-blind-desktop.png")
        page.get_by_role("button", name="B is better").click()
        expect(page.get_by_text("Saved to the eval pool", exact=False)).to_be_visible(timeout=TIMEOUT_MS)
        caption = page.locator(".st-key-answer_b [data-testid='stCaptionContainer']").inner_text()
        assert caption in ("B: base", "B: round-1"), "names revealed after the vote"
        with session_scope(engine) as session:
            judgment = session.exec(select(Judgment).order_by(Judgment.id.desc())).first()
            comp = session.get(Comparison, judgment.comparison_id)
            shown_left = session.get(
                Candidate, comp.candidate_a_id if judgment.left == "a" else comp.candidate_b_id
            )
            chosen = session.get(
                Candidate, comp.candidate_a_id if judgment.choice == Choice.a else comp.candidate_b_id
            )
            chosen_version = session.get(ModelVersion, chosen.model_version_id).name
        assert comp.purpose == Purpose.eval and shown_left.text == left and chosen.text == right
        assert caption == f"B: {chosen_version}"
        page.get_by_label("Your next message").fill("Shorter, please")
        page.get_by_role("button", name="Send").click()
        expect(page.get_by_text("Answer you continued from")).to_be_visible(timeout=GENERATION_TIMEOUT_MS)
        _answers(page)
        expect(page.get_by_role("button", name="Both bad")).to_be_visible(timeout=TIMEOUT_MS)
        screenshots(page, artifacts / "compare-follow-up-desktop.png")
        assert outside == [], f"the page fetched {outside}"
        page.close()

        phone = browser.new_page(viewport=PHONE)
        phone.goto(f"{url}/compare")
        phone.get_by_text("A held-out prompt").click()
        expect(phone.get_by_text("Held-out prompt (eval split)")).to_be_visible(timeout=TIMEOUT_MS)
        phone.get_by_role("button", name="Generate").click()
        _answers(phone)
        expect(phone.get_by_role("button", name="Both bad")).to_be_visible(timeout=TIMEOUT_MS)
        screenshots(phone, artifacts / "compare-phone.png")
        phone.keyboard.press("3")  # the Annotate page's keys: 3 is a tie
        expect(phone.get_by_text("Saved to the eval pool", exact=False)).to_be_visible(timeout=TIMEOUT_MS)
        expect(phone.get_by_text("Continue the conversation", exact=False)).to_be_visible(timeout=TIMEOUT_MS)
        screenshots(phone, artifacts / "compare-revealed-phone.png")
        phone.close()
    finally:
        stop_app(proc)
    log = proc.stderr.read().decode(errors="replace")
    assert "Warning" not in log, f"the server log stays quiet while generating:\n{log[-2000:]}"
