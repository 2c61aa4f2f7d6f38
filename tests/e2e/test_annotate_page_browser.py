"""The Annotate page as an annotator meets it (issue 17), at 1280×800 and on a 390×844 phone, against the
real server; each test leaves a screenshot per viewport in test-artifacts/."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect
from sqlmodel import select

from storage.db import session_scope
from storage.models import Annotator, Judgment, Strength
from testkit.annotate_seed import seed_pairs
from testkit.app_server import start_app, stop_app
from testkit.ui import TIMEOUT_MS, blur, press_and_wait_for_next, shown_pair, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]

VIEWPORTS = {
    "desktop": {"viewport": {"width": 1280, "height": 800}},
    "phone": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True},
}
MAIN = "[data-testid='stMain']"


@pytest.fixture(params=list(VIEWPORTS))
def page(request, browser) -> Page:
    context = browser.new_context(**VIEWPORTS[request.param])
    page = context.new_page()
    page.viewport_name = request.param
    yield page
    context.close()


def judgments_of(engine, name: str) -> list[Judgment]:
    with session_scope(engine) as session:
        query = (
            select(Judgment).join(Annotator).where(Annotator.name == name, Judgment.superseded_at.is_(None))
        )
        return list(session.exec(query.order_by(Judgment.id)))


def on_screen(page: Page, selector: str) -> bool:
    """The whole element lies inside the viewport as it is now (no scrolling)."""
    box = page.locator(selector).first.bounding_box()
    size = page.viewport_size
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= size["height"]


def open_side_panel(page: Page) -> None:
    if page.viewport_name == "phone":  # collapsed on a phone: one tap opens it
        page.get_by_test_id("stExpandSidebarButton").click()


def test_heading_subject_guidelines_and_buttons_on_one_screen(app, page, artifacts):
    seed_pairs(app.engine, train=6, template="youtube-title")
    sign_in(page, app.url, "alice", app.tokens["alice"])
    blur(page)
    shown_pair(page)
    expect(page.get_by_role("heading", name="Which answer is better?")).to_be_visible()
    expect(page.get_by_text("Read the input and both answers, then press a button")).to_be_visible()
    expect(page.get_by_text("you: 0 done · 6 left for you · team 0 / 6 in round 0")).to_be_visible()
    subject = page.locator(".st-key-subject_box [data-testid='stText']")
    assert subject.inner_text().startswith("Idea 0-"), "the video idea, not the template, stands out"
    assert "Video Idea" not in page.locator(".st-key-subject_box").inner_text()
    for box in (".st-key-candidate_a", ".st-key-candidate_b"):
        assert page.locator(box).bounding_box()["height"] < 110, "a one-line title gets a small box"
    for selector in [".st-key-subject_box", ".st-key-candidate_a", ".st-key-candidate_b"] + [
        f"[class*='st-key-choose_{name}_'] button" for name in ("left", "right", "tie", "both_bad", "skip")
    ]:
        assert on_screen(page, selector), f"{selector} is not on the first screen"
    page.screenshot(path=artifacts / f"annotate-page-{page.viewport_name}.png")
    page.get_by_text("Full prompt").click()
    expect(page.get_by_text("Given the YouTube video idea write an engaging title.")).to_be_visible()
    open_side_panel(page)
    sidebar = page.get_by_test_id("stSidebar")
    expect(sidebar.get_by_role("heading", name="Guidelines")).to_be_visible()
    expect(sidebar.get_by_text("Pick the title you would rather click on")).to_be_visible()
    expect(sidebar.get_by_text("Keys:")).to_contain_text("1 A is better")
    page.screenshot(path=artifacts / f"annotate-guidelines-{page.viewport_name}.png")


def test_the_view_is_back_at_the_top_on_each_new_pair(app, page):
    seed_pairs(app.engine, train=4, template="youtube-title")
    sign_in(page, app.url, "alice", app.tokens["alice"])
    blur(page)
    first = shown_pair(page)
    page.locator(MAIN).evaluate("(main) => main.scrollTo(0, main.scrollHeight)")
    page.get_by_role("button", name="Undo last").scroll_into_view_if_needed()
    assert page.locator(MAIN).evaluate("(main) => main.scrollTop") > 0, "the page scrolled down"
    button = page.get_by_role("button", name="A is better")
    button.scroll_into_view_if_needed()
    button.tap() if page.viewport_name == "phone" else button.click()
    shown_pair(page, other_than=first)
    assert page.locator(MAIN).evaluate("(main) => main.scrollTop") == 0
    assert on_screen(page, ".st-key-subject_box")


def test_my_progress_the_end_of_the_queue_and_new_pairs_arriving(app, page, browser, artifacts):
    seed_pairs(app.engine, train=2)
    bob = browser.new_page()
    sign_in(bob, app.url, "bob", app.tokens["bob"])
    shown_pair(bob)  # bob holds one of the two pairs
    sign_in(page, app.url, "alice", app.tokens["alice"])
    blur(page)
    shown_pair(page)
    expect(page.get_by_text("you: 0 done · 1 left for you · team 0 / 2 in round 0")).to_be_visible()
    page.keyboard.press("1")
    expect(page.get_by_text("the last 1 open pair(s) are being labelled by others")).to_be_visible(
        timeout=TIMEOUT_MS
    )
    expect(page.get_by_text("you: 1 done · 0 left for you · team 1 / 2 in round 0")).to_be_visible()
    page.screenshot(path=artifacts / f"annotate-held-by-others-{page.viewport_name}.png")
    blur(bob)
    shown_pair(bob)
    bob.keyboard.press("1")  # bob decides his pair: round 0 is done
    expect(page.get_by_text("you: 1 done · 0 left for you · team 2 / 2 in round 0")).to_be_visible(
        timeout=TIMEOUT_MS
    )
    bob.close()
    seed_pairs(app.engine, train=3, round_id=1)  # a new round arrives while alice waits
    expect(page.get_by_text("New pairs arrived: here is the next one.")).to_be_visible(timeout=TIMEOUT_MS)
    shown_pair(page)
    expect(page.get_by_text("you: 0 done · 3 left for you · team 0 / 3 in round 1")).to_be_visible()
    press_and_wait_for_next(page, "2")
    press_and_wait_for_next(page, "2")
    page.keyboard.press("2")
    expect(page.get_by_text("Nothing left to label: all 3 pairs are done. Thank you!")).to_be_visible(
        timeout=TIMEOUT_MS
    )
    page.screenshot(path=artifacts / f"annotate-all-done-{page.viewport_name}.png")


def test_graded_choices_show_the_scale_and_store_the_strength(app_with, page, artifacts):
    app = app_with("annotate.graded_choices=true")
    seed_pairs(app.engine, train=2)
    sign_in(page, app.url, "alice", app.tokens["alice"])
    blur(page)
    shown_pair(page)
    for label in ("A much better", "A slightly better", "Tie", "B slightly better", "B much better"):
        assert on_screen(page, f"button:has-text('{label}')"), label
    page.screenshot(path=artifacts / f"annotate-graded-{page.viewport_name}.png")
    press_and_wait_for_next(page, "5")
    button = page.get_by_role("button", name="A slightly better")
    button.tap() if page.viewport_name == "phone" else button.click()
    expect(page.get_by_text("Nothing left to label")).to_be_visible(timeout=TIMEOUT_MS)
    assert [(j.choice.value == j.left, j.strength) for j in judgments_of(app.engine, "alice")] == [
        (False, Strength.much),
        (True, Strength.slightly),
    ]


def test_review_my_work_change_the_latest_and_an_admin_sees_anyones(app, page, artifacts):
    seed_pairs(app.engine, train=4, template="youtube-title")
    sign_in(page, app.url, "alice", app.tokens["alice"])
    blur(page)
    shown_pair(page)
    press_and_wait_for_next(page, "1")
    press_and_wait_for_next(page, "3")
    page.goto(f"{app.url}/review")
    expect(page.get_by_role("heading", name="Your recent decisions")).to_be_visible(timeout=TIMEOUT_MS)
    grid = page.get_by_test_id("stDataFrame")
    expect(grid).to_contain_text("Tie", timeout=TIMEOUT_MS)
    expect(grid).to_contain_text("A is better")
    expect(grid).to_contain_text("Idea 0-")
    page.screenshot(path=artifacts / f"review-{page.viewport_name}.png")
    page.get_by_role("button", name="Change my latest decision (Tie on").click()
    expect(page.get_by_text("Withdrawn: that pair is back on the Annotate page")).to_be_visible(
        timeout=TIMEOUT_MS
    )
    assert [j.choice.value for j in judgments_of(app.engine, "alice")] != ["tie"]
    assert len(judgments_of(app.engine, "alice")) == 1
    admin = page.context.browser.new_context(**VIEWPORTS[page.viewport_name]).new_page()
    sign_in(admin, app.url, "root", app.tokens["root"])
    admin.goto(f"{app.url}/review")
    admin.get_by_test_id("stSelectbox").click()
    admin.get_by_role("option", name="alice").click()
    expect(admin.get_by_test_id("stDataFrame")).to_contain_text("A is better", timeout=TIMEOUT_MS)
    expect(admin.get_by_role("button", name="Change my latest decision")).to_have_count(0)
    admin.screenshot(path=artifacts / f"review-admin-{page.viewport_name}.png")
    admin.context.close()


def test_markdown_candidates_render_safely(app_with, page, artifacts):
    app = app_with("annotate.markdown_candidates=true")
    chat = "Use **bold** and `code`:\n\n- one\n- two <b>raw</b> ![x](http://example.com/x.png)"
    seed_pairs(app.engine, train=1, texts=(chat, "Plain answer"))
    requests = []
    page.on("request", lambda req: requests.append(req.url))
    sign_in(page, app.url, "alice", app.tokens["alice"])
    boxes = page.locator(".st-key-candidate_a, .st-key-candidate_b")
    expect(boxes.locator("strong", has_text="bold")).to_have_count(1, timeout=TIMEOUT_MS)
    expect(boxes.locator("code", has_text="code")).to_have_count(1)
    expect(boxes.locator("li")).to_have_count(2)
    assert boxes.locator("b, img").count() == 0, "no raw HTML, no image"
    expect(boxes.get_by_text("![x](http://example.com/x.png)", exact=False)).to_have_count(1)
    expect(page.locator(".st-key-subject_box [data-testid='stText']")).to_be_visible()
    page.wait_for_timeout(500)
    assert [u for u in requests if "example.com" in u] == []
    page.screenshot(path=artifacts / f"annotate-markdown-{page.viewport_name}.png")


def test_signing_out_on_localhost_sticks_across_a_reload(engine, sqlite_url, page, artifacts):
    seed_pairs(engine, train=2)
    proc, url = start_app(sqlite_url)  # `make run`: loopback, the local user allowed
    try:
        page.goto(url)
        expect(page.get_by_text("Working as the local user")).to_be_attached(timeout=TIMEOUT_MS)
        open_side_panel(page)
        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_label("Name")).to_be_visible(timeout=TIMEOUT_MS)
        page.reload()
        expect(page.get_by_label("Name")).to_be_visible(timeout=TIMEOUT_MS)
        expect(page.get_by_label("Token")).to_be_visible()
        expect(page.get_by_text("Working as the local user")).to_have_count(0)
        page.screenshot(path=artifacts / f"signed-out-local-{page.viewport_name}.png")
        page.get_by_role("button", name="Continue as the local user (local)").click()
        expect(page.get_by_text("Working as the local user")).to_be_attached(timeout=TIMEOUT_MS)
        page.reload()  # continuing as the local user sticks too
        expect(page.get_by_text("Working as the local user")).to_be_attached(timeout=TIMEOUT_MS)
    finally:
        stop_app(proc)
