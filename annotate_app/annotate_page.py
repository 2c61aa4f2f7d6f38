"""The Annotate page: one pair at a time, blind, keyboard-driven.

Candidates are shown with ``st.text`` (never Markdown or HTML), the order comes from the storage layer
(random per annotator and pair, stable on reload), and the time to decide is measured on the server
from the render that first showed the pair to the click.

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
from labelling.assignment import (
    Assigned,
    DecisionRefused,
    Undoable,
    next_pair,
    progress,
    record_judgment,
    side_to_choice,
    undo_last,
    undoable,
)
from storage.models import Choice

NOTE_KEY = "annotate_note"
_ON_SCREEN = "annotate_on_screen"  # the Showing whose buttons are live
_FLASH = "annotate_flash"
BOX_HEIGHT_PX = 200
PROMPT_PREVIEW_CHARS = 60

# (label, shortcut, what it records): "left"/"right" are mapped to a/b with the pair's display order
BUTTONS: list[tuple[str, str, str]] = [
    ("A is better", "1", "left"),
    ("B is better", "2", "right"),
    ("Tie", "3", Choice.tie.value),
    ("Both bad", "4", Choice.both_bad.value),
    ("Skip", "0", Choice.skip.value),
]
FLASH_TEXT = {
    "left": "A is better",
    "right": "B is better",
    "tie": "Tie",
    "both_bad": "Both bad",
    "skip": "Skipped",
}

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
_GATE_CSS = """<style>
body:not(.prefloop-ready) [class*='st-key-choose_'] button {opacity: 0.45; cursor: progress;}
.st-key-gate_saving, .st-key-gate_early {display: none;}
body.prefloop-saving .st-key-gate_saving, body.prefloop-early .st-key-gate_early {display: block;}
</style>"""
READY_MS = 300  # nobody reads two answers faster: a press sooner after a new pair is not about it


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


def _decide(user: User, comparison_id: int, showing_id: str, left: str, action: str) -> None:
    """Button callback: runs before the rerun that renders the next pair; only for the showing on screen."""
    on_screen: Showing | None = st.session_state.get(_ON_SCREEN)
    if on_screen is None or (on_screen.comparison_id, on_screen.id) != (comparison_id, showing_id):
        return  # a press on buttons already replaced (or being replaced): the annotator never saw its pair
    st.session_state.pop(_ON_SCREEN)
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
        )
    except DecisionRefused:
        st.session_state[_FLASH] = (
            "Not saved: that pair was already decided (in another tab?) or its time ran out. Here is your "
            "next one."
        )
        return
    st.session_state[NOTE_KEY] = ""
    st.session_state[_FLASH] = f"Saved: {FLASH_TEXT[action]}"


def _undo(user: User, judgment_id: int) -> None:
    undone = undo_last(engine(), user.id, config().annotate, expected=judgment_id)
    st.session_state.pop(_ON_SCREEN, None)
    st.session_state[_FLASH] = (
        "Undone: the previous pair is back; decide again." if undone else "Nothing to undo any more."
    )


def _described(last: Undoable) -> str:
    if last.choice in (Choice.a, Choice.b):
        what = "A is better" if last.choice.value == last.left else "B is better"
    else:
        what = FLASH_TEXT[last.choice.value]
    prompt = " ".join(last.prompt.split())
    if len(prompt) > PROMPT_PREVIEW_CHARS:
        prompt = prompt[: PROMPT_PREVIEW_CHARS - 1] + "…"
    return f"Undo withdraws your last decision, “{what}” on “{prompt}”."


def _plain_box(label: str, text: str, key: str, height: int | None = None) -> None:
    with st.container(border=True, height=height or "content", key=key):
        st.caption(label)
        st.text(text, width="stretch")


def _render_progress(user: User) -> None:
    prog = progress(engine(), user.id, config().annotate)
    where = f"round {prog.round_id}" if prog.round_id is not None else "imported pairs"
    label = f"{prog.done} of {prog.total} in {where} · your decisions today: {prog.mine_today}"
    st.progress(prog.done / prog.total if prog.total else 0.0, text=label)


def _render_pair(user: User, pair: Assigned) -> None:
    showing = _showing(pair)
    if pair.system:
        _plain_box("System", pair.system, "system_box")
    for i, turn in enumerate(pair.history):
        _plain_box(f"Earlier turn: {turn.get('role', '')}", turn.get("content", ""), f"history_{i}")
    _plain_box("Prompt", pair.prompt, "prompt_box")
    left_col, right_col = st.columns(2)
    with left_col:
        _plain_box("A", pair.left_text, "candidate_a", BOX_HEIGHT_PX)
    with right_col:
        _plain_box("B", pair.right_text, "candidate_b", BOX_HEIGHT_PX)
    with st.container(key="choices"):
        for col, (label, shortcut, action) in zip(st.columns(len(BUTTONS)), BUTTONS, strict=True):
            col.button(
                label,
                key=f"choose_{action}_{pair.comparison_id}_{showing.id}",
                shortcut=shortcut,
                on_click=_decide,
                args=(user, pair.comparison_id, showing.id, pair.left, action),
                type="primary" if action in ("left", "right") else "secondary",
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


def render() -> None:
    user = current_user()
    settings = config().annotate
    keys = {shortcut: action for _, shortcut, action in BUTTONS}
    gate = {"keys": json.dumps(keys), "count": len(BUTTONS), "ready_ms": READY_MS}
    st.html(_GATE_JS % gate + _GATE_CSS, unsafe_allow_javascript=True)
    _render_progress(user)
    pair = next_pair(engine(), user.id, settings)
    if pair is None:
        st.session_state.pop(_ON_SCREEN, None)
        st.success(
            "Nothing left to label for you right now. Thank you! New pairs appear here when generated."
        )
    else:
        _render_pair(user, pair)
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
    with st.expander("Guidelines"):
        st.markdown(settings.guidelines)  # the operator's text, so Markdown is intended here
