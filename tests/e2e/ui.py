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


def shown_pair(page: Page) -> tuple[str, str]:
    """The two candidate texts on screen, once both boxes are rendered (and not stale)."""
    left = page.locator(f"{LEFT_BOX} [data-testid='stText']")
    right = page.locator(f"{RIGHT_BOX} [data-testid='stText']")
    expect(left).to_be_visible(timeout=TIMEOUT_MS)
    expect(right).to_be_visible(timeout=TIMEOUT_MS)
    return left.inner_text(), right.inner_text()


def press_and_wait_for_next(page: Page, key: str) -> tuple[str, str]:
    """Press a shortcut with no input focused and wait until a different pair is on screen."""
    before = shown_pair(page)
    page.keyboard.press(key)
    page.wait_for_function(
        """([sel_l, sel_r, l, r]) => {
            const a = document.querySelector(sel_l + " [data-testid='stText']");
            const b = document.querySelector(sel_r + " [data-testid='stText']");
            return !!a && !!b && (a.innerText !== l || b.innerText !== r);
        }""",
        arg=[LEFT_BOX, RIGHT_BOX, *before],
        timeout=TIMEOUT_MS,
    )
    return shown_pair(page)


def blur(page: Page) -> None:
    """Shortcuts are ignored while a text field has focus (so a note can contain digits)."""
    page.evaluate("document.activeElement && document.activeElement.blur()")
