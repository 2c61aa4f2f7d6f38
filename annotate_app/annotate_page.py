"""The Annotate page: one pair at a time, blind, keyboard-driven.

Candidates are shown with ``st.text`` (never raw HTML; Markdown only with ``annotate.markdown_candidates``,
images and HTML off), the order comes from the storage layer (random per annotator and pair, stable on
reload), and the time to decide is measured on the server from the render that first showed the pair to
the click. The prompt's subject (the raw input of its template, e.g. the video idea) stands out; the
full prompt is one click away; the guidelines and shortcuts are in the side panel.

A decision is bound to what was on screen: each showing of a pair gets a fresh id, the buttons' keys and
callback arguments carry the pair's id and that showing's id, and a callback whose showing is no longer
the one on screen (a second click or key before the next pair arrives) is ignored. The storage layer
then refuses any pair that is not the annotator's live lease, so a stale second tab cannot overwrite a
decision either. In the browser, one gate (``_GATE_JS``) takes every click, tap and shortcut key: a press
counts only on the live buttons of the pair on screen, once they have stood still for ``READY_MS``; it
marks them as saving, and any other press is refused on screen.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass

import streamlit as st

from annotate_app.context import User, config, current_user, engine
from annotate_app.signin import ensure_user
from labelling.assignment import (
    GRADED_SCALE,
    Assigned,
    DecisionRefused,
    Progress,
    Undoable,
    next_pair,
    progress,
    record_judgment,
    side_to_choice,
    undo_last,
    undoable,
)
from storage.models import Choice, Strength

NOTE_KEY = "annotate_note"
_ON_SCREEN = "annotate_on_screen"  # the Showing whose buttons are live
_FLASH = "annotate_flash"
_QUEUE_POLL_S = 5  # an empty queue looks for new pairs this often
PROMPT_PREVIEW_CHARS = 60
READY_MS = 300  # nobody reads two answers faster: a press sooner after a new pair is not about it


@dataclass(frozen=True)
class Button:
    label: str
    shortcut: str
    name: str  # part of the widget key; "left"/"right" sides are mapped to a/b with the display order
    action: str  # "left", "right" or a Choice value
    strength: Strength | None = None


PAIRWISE = [
    Button("A is better", "1", "left", "left"),
    Button("B is better", "2", "right", "right"),
    Button("Tie", "3", "tie", Choice.tie.value),
    Button("Both bad", "4", "both_bad", Choice.both_bad.value),
    Button("Skip", "0", "skip", Choice.skip.value),
]
GRADED = [
    Button(label, str(key), f"{action}_{strength.name}" if strength else action, action, strength)
    for key, (label, action, strength) in enumerate(GRADED_SCALE, start=1)
] + [
    Button("Both bad", "6", "both_bad", Choice.both_bad.value),
    Button("Skip", "0", "skip", Choice.skip.value),
]


def buttons() -> list[Button]:
    return GRADED if config().annotate.graded_choices else PAIRWISE


# Installed once per page: every press (click, tap or shortcut key) goes through one gate. A press counts
# only on the buttons of the showing on screen, once all of them are there, none stale, and they have
# stood still for READY_MS: during a rerun Streamlit keeps the previous pair's buttons on screen (stale,
# still clickable) and shifts them as the new elements arrive, so a second tap on the same spot hit a
# button of another pair, or of no pair the annotator had read. The gate also owns the shortcut keys
# (Streamlit binds them only some time after the buttons appear, and a button leaving the page unbinds
# its key for the one replacing it). A press it refuses is said on screen, never lost silently.
_GATE_JS = """<script>
(() => {
  if (window.__prefloopGate) return;
  window.__prefloopGate = true;
  const KEYS = %(keys)s, COUNT = %(count)d, READY_MS = %(ready_ms)d, SAVE_TIMEOUT_MS = 8000;
  const PATTERN = /st-key-choose_([a-z_]+)_([0-9]+)_([0-9a-f]+)/;
  let live = null, since = 0, saving = null, savingSince = 0, sawRun = false, passing = false, early = 0;
  const controls = () => [...document.querySelectorAll("[class*='st-key-choose_']")]
    .map((el) => { const m = el.className.match(PATTERN); return m && {el, name: m[1], showing: m[3]}; })
    .filter(Boolean);
  const running = () => {
    const app = document.querySelector("[data-testid='stApp']");
    return !app || app.dataset.testScriptState === "running";
  };
  const ready = () => live !== null && live !== saving && performance.now() - since >= READY_MS;
  const tick = () => {
    const now = performance.now(), all = controls();
    const complete = all.length === COUNT && all.every((c) => c.showing === all[0].showing)
      && !all.some((c) => c.el.closest("[data-stale='true']"));
    const showing = complete ? all[0].showing : null;
    if (showing !== live) {
      live = showing;
      since = now;
      if (showing !== null && showing !== saving) {
        saving = null;
        document.querySelector("[data-testid='stMain']")?.scrollTo(0, 0);
        window.scrollTo(0, 0);
      }
    }
    if (saving !== null) {
      sawRun = sawRun || running();
      // the press stored nothing and the same pair stays (refused, or a lost connection): re-arm
      if ((sawRun && !running() && live === saving) || now - savingSince > SAVE_TIMEOUT_MS) {
        saving = null;
        since = now;
      }
    }
    const body = document.body.classList;
    body.toggle("prefloop-ready", ready());
    body.toggle("prefloop-saving", saving !== null);
    body.toggle("prefloop-early", now - early < 1500 && saving === null);
  };
  setInterval(tick, 40);
  const refuse = (e) => {
    e.preventDefault();
    e.stopImmediatePropagation();
    early = performance.now();
    tick();
  };
  const accept = () => {
    saving = live;
    savingSince = performance.now();
    sawRun = false;
    tick();
  };
  window.addEventListener("keydown", (e) => {
    if (!(e.key in KEYS) || e.altKey || e.ctrlKey || e.metaKey) return;
    if (e.target.closest && e.target.closest("input, textarea, [contenteditable='true']")) return;
    if (e.repeat || !ready()) return refuse(e);
    e.preventDefault();
    e.stopImmediatePropagation();
    const target = controls().find((c) => c.name === KEYS[e.key] && c.showing === live);
    if (!target) return;
    accept();
    passing = true;
    try { target.el.querySelector("button").click(); } finally { passing = false; }
  }, true);
  window.addEventListener("click", (e) => {
    const box = e.target.closest && e.target.closest("[class*='st-key-choose_']");
    if (!box || passing) return;
    const m = box.className.match(PATTERN);
    if (!m || m[3] !== live || !ready() || box.closest("[data-stale='true']")) return refuse(e);
    accept();
  }, true);
})();
</script>"""
_PAGE_CSS = """<style>
body:not(.prefloop-ready) [class*='st-key-choose_'] button {opacity: 0.45; cursor: progress;}
.st-key-gate_saving, .st-key-gate_early {display: none;}
body.prefloop-saving .st-key-gate_saving, body.prefloop-early .st-key-gate_early {display: block;}
.st-key-subject_box [data-testid='stText'] {font-size: 1.15rem; font-weight: 600;}
.st-key-candidate_a, .st-key-candidate_b {max-height: 45vh; overflow-y: auto;}
.st-key-choices button {min-width: 6.5rem;}
[data-testid='stMainBlockContainer'] {padding-top: 3rem;}
</style>"""


@dataclass(frozen=True)
class Showing:
    """One showing of a pair: a reload, an undo or a new pair gets a new id; a rerun keeps it."""

    comparison_id: int
    id: str
    shown_at: float  # monotonic time of the first render


def _showing(pair: Assigned) -> Showing:
    on_screen = st.session_state.get(_ON_SCREEN)
    if on_screen is None or on_screen.comparison_id != pair.comparison_id:
        on_screen = Showing(pair.comparison_id, secrets.token_hex(6), time.monotonic())
        st.session_state[_ON_SCREEN] = on_screen
    return on_screen


def _decide(user: User, comparison_id: int, showing_id: str, left: str, button: Button) -> None:
    """Button callback: runs before the rerun that renders the next pair; only for the showing on screen."""
    on_screen: Showing | None = st.session_state.get(_ON_SCREEN)
    if on_screen is None or (on_screen.comparison_id, on_screen.id) != (comparison_id, showing_id):
        return  # a press on buttons already replaced (or being replaced): the annotator never saw its pair
    st.session_state.pop(_ON_SCREEN)
    action = button.action
    choice = side_to_choice(action, left) if action in ("left", "right") else Choice(action)
    try:
        record_judgment(
            engine(),
            user.id,
            comparison_id,
            choice,
            left=left,
            settings=config().annotate,
            ms_to_decide=round((time.monotonic() - on_screen.shown_at) * 1000),
            note=st.session_state.get(NOTE_KEY) or None,
            strength=button.strength,
        )
    except DecisionRefused:
        st.session_state[_FLASH] = (
            "Not saved: that pair was already decided (in another tab?) or its time ran out. Here is your "
            "next one."
        )
        return
    st.session_state[NOTE_KEY] = ""
    st.session_state[_FLASH] = f"Saved: {button.label}" if action != Choice.skip.value else "Skipped"


def _undo(user: User, judgment_id: int) -> None:
    undone = undo_last(engine(), user.id, config().annotate, expected=judgment_id)
    st.session_state.pop(_ON_SCREEN, None)
    st.session_state[_FLASH] = (
        "Undone: the previous pair is back; decide again." if undone else "Nothing to undo any more."
    )


def described_choice(choice: Choice, left: str, strength: int | None) -> str:
    """A decision in the annotator's screen terms (A = the left answer they saw)."""
    if choice not in (Choice.a, Choice.b):
        return {"tie": "Tie", "both_bad": "Both bad", "skip": "Skipped"}[choice.value]
    side = "A" if choice.value == left else "B"
    grade = {Strength.much: " much", Strength.slightly: " slightly"}.get(strength, "") if strength else ""
    return f"{side}{grade} better" if grade else f"{side} is better"


def preview(text: str) -> str:
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= PROMPT_PREVIEW_CHARS else one_line[: PROMPT_PREVIEW_CHARS - 1] + "…"


def _described(last: Undoable) -> str:
    what = described_choice(last.choice, last.left, None)
    return f"Undo withdraws your last decision, “{what}” on “{preview(last.prompt)}”."


def safe_markdown(text: str) -> str:
    """Markdown that fetches nothing: an image (``![alt](url)``) is shown as its literal text. Raw HTML
    is never rendered (``st.markdown`` without ``unsafe_allow_html`` escapes it)."""
    return text.replace("![", "!\\[")


def _candidate_box(label: str, text: str, key: str) -> None:
    with st.container(border=True, key=key):
        st.caption(label)
        if config().annotate.markdown_candidates:
            st.markdown(safe_markdown(text))
        else:
            st.text(text, width="stretch")


def _render_progress(prog: Progress) -> None:
    where = f"round {prog.round_id}" if prog.round_id is not None else "imported pairs"
    label = (
        f"you: {prog.mine:,} done · {prog.left_for_me:,} left for you · team {prog.done:,} / "
        f"{prog.total:,} in {where}"
    )
    st.progress(prog.done / prog.total if prog.total else 0.0, text=label)


def _render_prompt(pair: Assigned) -> None:
    with st.container(border=True, key="subject_box"):
        st.caption(pair.subject_label if pair.subject else "Prompt")
        st.text(pair.subject or pair.prompt, width="stretch")
    if pair.subject or pair.system or pair.history:
        with st.expander("Full prompt" if pair.subject else "System and earlier turns"):
            if pair.system:
                st.caption("System")
                st.text(pair.system, width="stretch")
            for turn in pair.history:
                st.caption(f"Earlier turn: {turn.get('role', '')}")
                st.text(turn.get("content", ""), width="stretch")
            if pair.subject:
                st.caption("Prompt")
                st.text(pair.prompt, width="stretch")


def _render_pair(user: User, pair: Assigned) -> None:
    showing = _showing(pair)
    _render_prompt(pair)
    left_col, right_col = st.columns(2)
    with left_col:
        _candidate_box("A", pair.left_text, "candidate_a")
    with right_col:
        _candidate_box("B", pair.right_text, "candidate_b")
    with st.container(key="choices", horizontal=True, gap="small"):
        for button in buttons():
            st.button(
                button.label,
                key=f"choose_{button.name}_{pair.comparison_id}_{showing.id}",
                shortcut=button.shortcut,
                on_click=_decide,
                args=(user, pair.comparison_id, showing.id, pair.left, button),
                type="primary" if button.action in ("left", "right") else "secondary",
                width="stretch",
            )
    with st.container(key="gate_saving"):
        st.caption("Saving your decision… further presses are ignored until the next pair appears.")
    with st.container(key="gate_early"):
        st.caption("Too soon: that press came before this pair was ready, so it was ignored.")
    st.text_input(
        "Note (optional, one line)",
        key=NOTE_KEY,
        max_chars=500,
        placeholder="e.g. B is cut off mid-sentence",
    )


@st.fragment(run_every=_QUEUE_POLL_S)
def _end_of_queue(user: User) -> None:
    """Nothing to show: say why, and look again every few seconds; new pairs bring the page back."""
    now = progress(engine(), user.id, config().annotate)
    if now.left_for_me > 0:
        st.session_state[_FLASH] = "New pairs arrived: here is the next one."
        st.rerun(scope="app")
    _render_progress(now)
    if now.held_by_others:
        st.info(
            f"Nothing for you right now: the last {now.held_by_others:,} open pair(s) are being labelled by "
            "others. If they leave them, they come back here; this page checks every few seconds."
        )
    elif now.total and now.done >= now.total:
        st.success(
            f"Nothing left to label: all {now.total:,} pairs are done. Thank you! New pairs appear here "
            "when generated."
        )
    else:
        st.success(
            "Nothing left to label for you right now: you have judged every open pair; others complete "
            "the rest. Thank you! New pairs appear here when generated."
        )


def _render_guidelines() -> None:
    with st.sidebar:
        st.subheader("Guidelines")
        st.markdown(config().annotate.guidelines)  # the operator's text, so Markdown is intended here
        keys = " · ".join(f"**{b.shortcut}** {b.label}" for b in buttons())
        st.markdown(f"Keys: {keys} · **U** undo")


def render() -> None:
    gate = {"keys": json.dumps({b.shortcut: b.name for b in buttons()}), "count": len(buttons())}
    st.html(_GATE_JS % {**gate, "ready_ms": READY_MS} + _PAGE_CSS, unsafe_allow_javascript=True)
    _render_guidelines()
    st.subheader("Which answer is better?")
    st.caption("Read the input and both answers, then press a button (or its key). Guidelines: side panel.")
    _labelling(current_user())


@st.fragment
def _labelling(user: User) -> None:
    """The pair, its buttons, the counts and Undo. A decision reruns only this fragment: main.py (sign-in,
    page config, navigation, side panel) and the heading are neither rerun nor re-sent: the browser gets
    32 messages to render per key press instead of 39, and no page-config or navigation update."""
    # main.py re-reads the annotator on every full run; a fragment rerun skips main.py, so check here that
    # the session still stands and the role is unchanged (else the full app reruns: sign-in page, menu).
    if ensure_user() != user:
        st.rerun(scope="app")
    settings = config().annotate
    pair = next_pair(engine(), user.id, settings)
    if pair is None:
        st.session_state.pop(_ON_SCREEN, None)
        _end_of_queue(user)
    else:
        counts = st.empty()  # filled after the pair: the browser shows the pair before the counts arrive
        _render_pair(user, pair)
        with counts:
            _render_progress(progress(engine(), user.id, settings))
    last = undoable(engine(), user.id, settings)
    undo_col, flash_col = st.columns([1, 4], vertical_alignment="center")
    undo_col.button(
        "Undo last",
        key=f"undo_{last.judgment_id}" if last else "undo",
        shortcut="U",
        on_click=_undo,
        args=(user, last.judgment_id if last else -1),
        disabled=last is None,
        help=f"Withdraws your latest decision only, within {settings.undo_seconds // 60} min of making it.",
    )
    if flash := st.session_state.pop(_FLASH, None):
        flash_col.caption(flash)
    if last is not None:
        flash_col.caption(_described(last))
