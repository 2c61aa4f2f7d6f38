"""The Annotate page: one pair at a time, blind, keyboard-driven.

Candidates are shown with ``st.text`` (never Markdown or HTML), the order comes from the storage layer
(random per annotator and pair, stable on reload), and the time to decide is measured on the server
from the render that first showed the pair to the click.

A decision is bound to what was on screen: each showing of a pair gets a fresh id, the buttons' keys and
callback arguments carry the pair's id and that showing's id, and a callback whose showing is no longer
the one on screen (a second click or key before the next pair arrives) is ignored. The storage layer
then refuses any pair that is not the annotator's live lease, so a stale second tab cannot overwrite a
decision either. In the browser, a press marks the buttons as saving and swallows further presses until
the next pair's buttons replace them.
"""

from __future__ import annotations

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

# Installed once per page: a press on the live buttons (click or shortcut) marks that showing as saving;
# while it is, further presses are swallowed before Streamlit's own shortcut listener sees them.
_SAVING_JS = """<script>
(() => {
  if (window.__prefloopSaving) return;
  window.__prefloopSaving = true;
  const KEYS = new Set(%(keys)s);
  const live = () => {
    const box = [...document.querySelectorAll("[class*='st-key-choices_']")]
      .find((el) => !el.closest("[data-stale='true']"));
    const m = box && box.className.match(/st-key-choices_([0-9a-f]+)/);
    return m ? m[1] : null;
  };
  const saving = (id) => document.body.classList.contains("prefloop-saving-" + id);
  const press = (e) => {
    const id = live();
    if (!id) return;
    if (saving(id)) { e.preventDefault(); e.stopImmediatePropagation(); return; }
    [...document.body.classList].filter((c) => c.startsWith("prefloop-saving-"))
      .forEach((c) => document.body.classList.remove(c));
    document.body.classList.add("prefloop-saving-" + id);
  };
  window.addEventListener("keydown", (e) => {
    if (!KEYS.has(e.key) || e.altKey || e.ctrlKey || e.metaKey) return;
    if (e.target.closest && e.target.closest("input, textarea, [contenteditable='true']")) return;
    if (e.repeat) { e.preventDefault(); e.stopImmediatePropagation(); return; }
    press(e);
  }, true);
  window.addEventListener("click", (e) => {
    if (e.target.closest && e.target.closest("[class*='st-key-choices_'] button")) press(e);
  }, true);
})();
</script>"""
_SAVING_CSS = """<style>
.st-key-saving_%(id)s {display: none;}
body.prefloop-saving-%(id)s .st-key-saving_%(id)s {display: block;}
body.prefloop-saving-%(id)s .st-key-choices_%(id)s button {opacity: 0.45; pointer-events: none;}
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
    st.html(_SAVING_CSS % {"id": showing.id})
    with st.container(key=f"choices_{showing.id}"):
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
    with st.container(key=f"saving_{showing.id}"):
        st.caption("Saving your decision… further presses are ignored until the next pair appears.")
    st.text_input(
        "Note (optional, one line)",
        key=NOTE_KEY,
        max_chars=500,
        placeholder="e.g. B is cut off mid-sentence",
    )


def render() -> None:
    user = current_user()
    settings = config().annotate
    st.html(_SAVING_JS % {"keys": [shortcut for _, shortcut, _ in BUTTONS]}, unsafe_allow_javascript=True)
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
