"""Fast hands in the real browser: every stored decision is one the annotator made on the pair on screen.

Each test logs, in the page and before the app's own listeners, what was on screen at every press; the
database must then hold only decisions on pairs that were on screen at a press, with the side pressed,
and none replaced (an earlier decision changes only through undo). Desktop and phone viewports.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect
from sqlmodel import select

from storage.db import session_scope
from storage.models import Annotator, Candidate, Comparison, Judgment
from testkit.annotate_seed import seed_pairs
from testkit.ui import TIMEOUT_MS, blur, shown_pair, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]

VIEWPORTS = {
    "desktop": {"viewport": {"width": 1280, "height": 900}},
    "phone": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True},
}
LOG_PRESSES = """
window.__presses = [];
const texts = (sel) =>
    [...document.querySelectorAll(sel + " [data-testid='stText']")].map((e) => e.innerText);
const snap = (what) => window.__presses.push(
    {what, left: texts(".st-key-candidate_a"), right: texts(".st-key-candidate_b")});
window.addEventListener("keydown", (e) => snap("key " + e.key + (e.repeat ? " repeat" : "")), true);
window.addEventListener("click", (e) => {
    const button = e.target.closest && e.target.closest("button");
    if (button) snap("click " + button.innerText);
}, true);
"""


# From the page's start, every 5 ms (a timer, so it runs between the page's own 40 ms checks even when a
# loaded machine delays drawing): the first look at which the buttons are there and the page's script has
# run presses "1", so the test runner's own delay cannot miss the moment before they are ready.
EARLY_KEY = """
window.__early = null;
const look = setInterval(() => {
    if (!window.__prefloopGate || !document.querySelector("[class*='st-key-choose_left_'] button")) return;
    clearInterval(look);
    const ready = document.body.classList.contains("prefloop-ready");
    window.__early = ready ? "ready already" : "pressed before ready";
    if (!ready) window.dispatchEvent(new KeyboardEvent("keydown", {key: "1", bubbles: true}));
}, 5);
"""


@pytest.fixture(params=list(VIEWPORTS))
def page(request, browser) -> Page:
    context = browser.new_context(**VIEWPORTS[request.param])
    context.add_init_script(LOG_PRESSES)
    page = context.new_page()
    yield page
    context.close()


def rows_of(engine, name: str) -> list[tuple[Judgment, str, str, str]]:
    """Every judgment row of ``name`` (superseded ones too) with the left and right text they saw and
    the text they chose."""
    out = []
    with session_scope(engine) as session:
        query = select(Judgment).join(Annotator).where(Annotator.name == name).order_by(Judgment.id)
        for j in session.exec(query):
            comp = session.get(Comparison, j.comparison_id)
            a = session.get(Candidate, comp.candidate_a_id).text
            b = session.get(Candidate, comp.candidate_b_id).text
            left, right = (a, b) if j.left == "a" else (b, a)
            out.append((j, left, right, {"a": a, "b": b}.get(j.choice.value, j.choice.value)))
    return out


def _side_of(press: str) -> str | None:
    """The side a logged press chose: a click on a button, or its shortcut key."""
    if press.startswith(("click A is better", "key 1")):
        return "left"
    if press.startswith(("click B is better", "key 2")):
        return "right"
    return None


def assert_only_decisions_seen(page: Page, engine, name: str, side: str) -> list[Judgment]:
    """Each row is current, one per pair, on a pair on screen at some press, choosing the side a press on
    that pair chose; the first pair's decision is ``side``. (A later tap on the same spot can land on
    another button: on a phone the buttons move with the next pair's text.)"""
    presses = page.evaluate("window.__presses")
    rows = rows_of(engine, name)
    assert rows, f"nothing stored after {len(presses)} presses"
    assert [j.superseded_at for j, *_ in rows] == [None] * len(rows), "a decision was replaced"
    assert len({j.comparison_id for j, *_ in rows}) == len(rows), "a pair was judged twice"
    for i, (j, left, right, chosen) in enumerate(rows):
        on_screen = [p for p in presses if left in p["left"] and right in p["right"]]
        assert on_screen, f"pair {j.comparison_id} ({left!r} | {right!r}) was never on screen at a press"
        got = "left" if chosen == left else "right"
        pressed = [p["what"] for p in on_screen]
        assert got in {_side_of(w) for w in pressed}, (
            f"pair {j.comparison_id}: {got} stored, pressed {pressed}"
        )
        assert i or got == side, f"pair {j.comparison_id}: the first decision is not the side pressed"
    return [j for j, *_ in rows]


def signed_in(page: Page, app, name: str = "alice") -> tuple[str, str]:
    sign_in(page, app.url, name, app.tokens[name])
    blur(page)
    return shown_pair(page)


def settle(page: Page) -> None:
    shown_pair(page)
    page.wait_for_timeout(500)
    shown_pair(page)


def centre_of(page: Page, name: str) -> tuple[float, float]:
    """Where the button is on screen (scrolled into view first: on a phone the buttons sit low)."""
    button = page.get_by_role("button", name=name)
    button.scroll_into_view_if_needed()
    box = button.bounding_box()
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def press_twice(page: Page, name: str, gap_ms: int) -> None:
    """Two clicks (a mouse) or two taps (a phone) on the same spot, ``gap_ms`` apart, with no waiting
    for the page in between: what a hand does."""
    x, y = centre_of(page, name)
    phone = page.viewport_size == VIEWPORTS["phone"]["viewport"]
    for i in range(2):
        if i:
            page.wait_for_timeout(gap_ms)
        if phone:
            page.touchscreen.tap(x, y)
        else:
            page.mouse.click(x, y)


def test_a_double_click_stores_one_decision_on_the_pair_shown(app, page):
    seed_pairs(app.engine, train=6)
    first = signed_in(page, app)
    if page.viewport_size == VIEWPORTS["phone"]["viewport"]:
        press_twice(page, "A is better", 0)
    else:
        page.get_by_role("button", name="A is better").dblclick()
    shown_pair(page, other_than=first)
    settle(page)
    (only,) = assert_only_decisions_seen(page, app.engine, "alice", "left")
    assert rows_of(app.engine, "alice")[0][1] == first[0], "the decision is on the first pair"


@pytest.mark.parametrize("gap_ms", [60, 150, 300])
def test_two_clicks_apart_store_only_the_first(app, page, gap_ms):
    """The second press comes while the next pair is being shown or has been on screen for less than the
    page's ready delay: nobody has read a pair by then, so it must store nothing."""
    seed_pairs(app.engine, train=6)
    first = signed_in(page, app)
    press_twice(page, "B is better", gap_ms)
    settle(page)
    (only,) = assert_only_decisions_seen(page, app.engine, "alice", "right")
    assert rows_of(app.engine, "alice")[0][2] == first[1], "the decision is B on the first pair"


def test_six_keys_40_ms_apart_store_only_decisions_on_pairs_on_screen(app, page):
    seed_pairs(app.engine, train=10)
    signed_in(page, app)
    for _ in range(6):
        page.keyboard.press("1")
        page.wait_for_timeout(40)
    settle(page)
    stored = assert_only_decisions_seen(page, app.engine, "alice", "left")
    assert 1 <= len(stored) <= 6


def test_a_key_before_the_pair_is_ready_is_refused_on_screen_then_the_first_key_counts(app, page):
    seed_pairs(app.engine, train=4)
    page.add_init_script(EARLY_KEY)
    sign_in(page, app.url, "alice", app.tokens["alice"])
    for _ in range(3):  # a loaded machine can stall the page past the moment; a reload shows the pair again
        if page.wait_for_function("window.__early").json_value() == "pressed before ready":
            break
        page.reload()
    assert page.evaluate("window.__early") == "pressed before ready"
    blur(page)
    expect(page.locator(".st-key-gate_early")).to_be_visible(timeout=TIMEOUT_MS)
    first = shown_pair(page, ready=False)
    assert rows_of(app.engine, "alice") == []
    assert shown_pair(page) == first
    page.keyboard.press("2")  # the very first key once the buttons are live is not lost
    shown_pair(page, other_than=first)
    (only,) = assert_only_decisions_seen(page, app.engine, "alice", "right")


def test_a_key_held_down_stores_one_decision(app, page):
    seed_pairs(app.engine, train=6)
    first = signed_in(page, app)
    page.keyboard.down("2")
    saving = "document.body.classList.contains('prefloop-saving')"
    assert page.evaluate(saving), "the press marks the buttons as saving at once"
    for _ in range(30):  # the browser's auto-repeat: keydown events with repeat=true
        page.wait_for_timeout(30)
        page.keyboard.down("2")
    page.keyboard.up("2")
    settle(page)
    (only,) = assert_only_decisions_seen(page, app.engine, "alice", "right")
    assert rows_of(app.engine, "alice")[0][1] == first[0]


def test_a_stale_second_tab_cannot_replace_a_decision(app, page):
    seed_pairs(app.engine, train=6)
    first = signed_in(page, app)
    other = page.context.new_page()  # same browser, same session cookie: alice's second tab
    other.goto(app.url)
    expect(other.get_by_text("Signed in as alice")).to_be_visible(timeout=TIMEOUT_MS)
    assert shown_pair(other) == first, "both tabs show alice's leased pair"
    blur(other)
    shown_pair(other)
    other.keyboard.press("1")  # tab 2 decides: A
    shown_pair(other, other_than=first)
    page.keyboard.press("2")  # tab 1 still shows that pair and presses B
    expect(page.get_by_text("Not saved: that pair was already decided")).to_be_visible(timeout=TIMEOUT_MS)
    settle(page)
    rows = rows_of(app.engine, "alice")
    assert [(j.superseded_at, left, chosen) for j, left, _, chosen in rows] == [(None, first[0], first[0])]
    assert shown_pair(page) != first, "tab 1 moves on to alice's next pair"
