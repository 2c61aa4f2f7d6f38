"""End to end: the real ``prefloop app`` server in headless Chromium (see conftest)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from sqlmodel import select

from core.config import AnnotateConfig
from labelling.assignment import record_judgment
from storage.db import session_scope
from storage.models import Annotator, Candidate, Choice, Comparison, Judgment, RunStatus, TrainingRun
from testkit.annotate_seed import seed_pairs
from testkit.app_server import start_app, stop_app
from testkit.ui import TIMEOUT_MS, blur, press_and_wait_for_next, shown_pair, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]
DEFAULTS = AnnotateConfig()


def judgments_of(engine, name: str, current_only: bool = True) -> list[Judgment]:
    with session_scope(engine) as session:
        query = select(Judgment).join(Annotator).where(Annotator.name == name).order_by(Judgment.id)
        if current_only:
            query = query.where(Judgment.superseded_at.is_(None))
        return list(session.exec(query))


def chosen_text(engine, judgment: Judgment) -> str:
    with session_scope(engine) as session:
        comp = session.get(Comparison, judgment.comparison_id)
        cand_id = comp.candidate_a_id if judgment.choice == Choice.a else comp.candidate_b_id
        return session.get(Candidate, cand_id).text


def test_sign_in_then_label_with_the_keyboard(app, browser, artifacts):
    seed_pairs(app.engine, train=4)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(app.url)
    page.get_by_label("Name").fill("alice")
    page.get_by_label("Token").fill("not-the-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Unknown name or wrong token")).to_be_visible(timeout=TIMEOUT_MS)
    sign_in(page, app.url, "alice", app.tokens["alice"])
    left, right = shown_pair(page)
    page.screenshot(path=artifacts / "annotate.png", full_page=True)
    blur(page)
    _, right2 = press_and_wait_for_next(page, "1")
    press_and_wait_for_next(page, "2")
    first, second = judgments_of(app.engine, "alice")
    assert chosen_text(app.engine, first) == left, "key 1 chose the left candidate"
    assert chosen_text(app.engine, second) == right2, "key 2 chose the right candidate"
    assert first.ms_to_decide is not None and 0 <= first.ms_to_decide < 60_000
    expect(page.get_by_text("you: 2 done · 2 left for you · team 2 / 4 in round 0")).to_be_visible(
        timeout=TIMEOUT_MS
    )
    before_reload = shown_pair(page)
    page.reload()  # the session cookie keeps alice signed in, and her leased pair stays on screen
    expect(page.get_by_text("Signed in as alice")).to_be_visible(timeout=TIMEOUT_MS)
    assert shown_pair(page) == before_reload
    page.close()


def test_tie_both_bad_skip_undo_and_a_note_with_digits(app, browser):
    seed_pairs(app.engine, train=5)
    page = browser.new_page()
    sign_in(page, app.url, "bob", app.tokens["bob"])
    note = page.get_by_label("Note (optional, one line)")
    note.fill("2 words 1 more")  # digits typed into the note must not trigger the shortcuts
    blur(page)
    assert judgments_of(app.engine, "bob") == []
    press_and_wait_for_next(page, "3")
    press_and_wait_for_next(page, "4")
    skipped = shown_pair(page)
    press_and_wait_for_next(page, "0")
    back = press_and_wait_for_next(page, "u")
    assert back == skipped, "undo shows the undone pair again, same sides"
    current = judgments_of(app.engine, "bob")
    assert [j.choice for j in current] == [Choice.tie, Choice.both_bad]
    assert current[0].note == "2 words 1 more" and current[1].note is None
    every = judgments_of(app.engine, "bob", current_only=False)
    assert every[-1].choice == Choice.skip and every[-1].superseded_at is not None, "undo keeps history"
    page.close()


def test_two_annotators_at_once_never_get_the_same_overlap_one_pair(app, browser):
    pair_ids = seed_pairs(app.engine, train=8)
    pages = {}
    for name in ("alice", "bob"):
        context = browser.new_context()
        pages[name] = context.new_page()
        sign_in(pages[name], app.url, name, app.tokens[name])
        blur(pages[name])
    seen = {name: [shown_pair(page)] for name, page in pages.items()}
    assert seen["alice"][0] != seen["bob"][0]
    for _ in range(3):
        for name, page in pages.items():
            seen[name].append(press_and_wait_for_next(page, "1"))
    for page in pages.values():
        page.keyboard.press("2")
    for page in pages.values():
        expect(page.get_by_text("Nothing left to label")).to_be_visible(timeout=TIMEOUT_MS)
    alice = {j.comparison_id for j in judgments_of(app.engine, "alice")}
    bob = {j.comparison_id for j in judgments_of(app.engine, "bob")}
    assert alice.isdisjoint(bob) and alice | bob == set(pair_ids)
    assert set(seen["alice"]).isdisjoint(seen["bob"])
    for page in pages.values():
        page.context.close()


def add_history(engine, eval_pairs: list[int]) -> None:
    """Two annotators judged the eval pairs (agreement to show) and one training run logged a curve."""
    with session_scope(engine) as session:
        ids = {a.name: a.id for a in session.exec(select(Annotator))}
    for i, pair in enumerate(eval_pairs):
        record_judgment(
            engine, ids["alice"], pair, Choice.a, left="a", settings=DEFAULTS, ms_to_decide=2100 + 300 * i
        )
        record_judgment(
            engine,
            ids["bob"],
            pair,
            Choice.a if i % 3 else Choice.tie,
            left="b",
            settings=DEFAULTS,
            ms_to_decide=4000,
        )
    steps = [{"step": s, "loss": 0.69 * 0.93**s, "eval_loss": 0.7 * 0.95**s} for s in range(5, 60, 5)]
    with session_scope(engine, write=True) as session:
        session.add(TrainingRun(round_id=0, metrics=steps, status=RunStatus.completed))


def test_an_annotator_is_refused_the_dashboard_and_an_admin_sees_it(app, browser, artifacts):
    ids = seed_pairs(app.engine, train=3, eval=6)
    add_history(app.engine, ids[3:])
    page = browser.new_page()
    sign_in(page, app.url, "alice", app.tokens["alice"])
    expect(page.get_by_role("link", name="Dashboard")).to_have_count(0)
    blur(page)
    press_and_wait_for_next(page, "1")
    page.goto(f"{app.url}/dashboard")
    expect(page.get_by_text("The Dashboard page is for admins only")).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.get_by_text("Rounds")).to_have_count(0)
    page.goto(f"{app.url}/compare")
    expect(page.get_by_text("The Compare page is for admins only")).to_be_visible(timeout=TIMEOUT_MS)
    page.close()

    admin = browser.new_page(viewport={"width": 1280, "height": 1000})
    sign_in(admin, app.url, "root", app.tokens["root"])
    admin.get_by_role("link", name="Dashboard").click()
    expect(admin.get_by_role("heading", name="Rounds")).to_be_visible(timeout=TIMEOUT_MS)
    expect(admin.locator("[role=gridcell]", has_text="alice × bob")).to_be_attached(timeout=TIMEOUT_MS)
    expect(admin.get_by_text("Krippendorff's α over 6 shared pairs")).to_be_visible(timeout=TIMEOUT_MS)
    admin.screenshot(path=artifacts / "dashboard.png", full_page=True)
    admin.close()


def test_html_and_markdown_candidates_show_literally_and_fetch_nothing(app, browser, artifacts):
    script, image = "<script>alert(1)</script>", "![x](http://example.com/x.png)"
    seed_pairs(app.engine, train=1, texts=(script, image))
    page = browser.new_page()
    requests, dialogs = [], []
    page.on("request", lambda req: requests.append(req.url))
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    sign_in(page, app.url, "alice", app.tokens["alice"])
    assert sorted(shown_pair(page)) == sorted([script, image])
    assert page.locator(".st-key-candidate_a img, .st-key-candidate_b img").count() == 0
    page.wait_for_timeout(500)
    page.screenshot(path=artifacts / "annotate-literal.png")
    assert dialogs == []
    assert [u for u in requests if "example.com" in u] == []
    page.close()


def test_make_run_mode_needs_no_token_on_localhost(engine, sqlite_url, browser):
    seed_pairs(engine, train=1)
    proc, url = start_app(sqlite_url)  # defaults: 127.0.0.1, annotate.allow_local_user=true
    try:
        page = browser.new_page()
        page.goto(url)
        expect(page.get_by_text("Working as the local user")).to_be_visible(timeout=TIMEOUT_MS)
        shown_pair(page)
        page.close()
    finally:
        stop_app(proc)
