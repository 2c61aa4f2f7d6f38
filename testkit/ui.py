"""What an annotator does in the browser, as small steps shared by the e2e tests and bench/bench_app.py."""

from __future__ import annotations

from playwright.sync_api import Page, expect

TIMEOUT_MS = 15_000
LEFT_BOX = ".st-key-candidate_a"
RIGHT_BOX = ".st-key-candidate_b"


def sign_in(page: Page, url: str, name: str, token: str) -> None:
    page.goto(url)
    page.get_by_label("Name").fill(name)
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Signed in as " + name)).to_be_visible(timeout=TIMEOUT_MS)


_PAIR_JS = """([selLeft, selRight, before, ready]) => {
    const app = document.querySelector("[data-testid='stApp']");
    if (!app || app.dataset.testScriptState !== "notRunning") return null;
    if (ready && !document.body.classList.contains("prefloop-ready")) return null;
    const settled = (sel) => {
        const texts = [...document.querySelectorAll(sel + " [data-testid='stText']")]
            .filter((el) => !el.closest("[data-stale='true']"));
        return texts.length === 1 ? texts[0].innerText : null;
    };
    const pair = [settled(selLeft), settled(selRight)];
    if (pair[0] === null || pair[1] === null) return null;
    if (before && pair[0] === before[0] && pair[1] === before[1]) return null;
    return pair;
}"""


def shown_pair(
    page: Page,
    *,
    other_than: tuple[str, str] | None = None,
    ready: bool = True,
    timeout_ms: int = TIMEOUT_MS,
) -> tuple[str, str]:
    """The two candidate texts once the script run has finished and both boxes hold exactly one fresh
    (non-stale) text, and, with ``other_than``, once they differ from that pair; with ``ready``, once the
    buttons are live too (the page ignores a press in its first moments on a new pair, and says so)."""
    arg = [LEFT_BOX, RIGHT_BOX, other_than, ready]
    handle = page.wait_for_function(_PAIR_JS, arg=arg, timeout=timeout_ms)
    left, right = handle.json_value()
    return left, right


def press_and_wait_for_next(page: Page, key: str) -> tuple[str, str]:
    """Press a shortcut (no input focused) and wait until a different pair is on screen."""
    before = shown_pair(page)
    page.keyboard.press(key)
    return shown_pair(page, other_than=before)


def blur(page: Page) -> None:
    """Shortcuts are ignored while a text field has focus (so a note can contain digits)."""
    page.evaluate("document.activeElement && document.activeElement.blur()")
