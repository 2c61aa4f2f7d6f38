"""The Annotate page: one pair at a time, blind, keyboard-driven.

Candidates are shown with ``st.text`` (never Markdown or HTML), the order comes from the storage layer
(random per annotator and pair, stable on reload), and the time to decide is measured on the server
from the render that first showed the pair to the click.
"""

from __future__ import annotations

import time

import streamlit as st

from annotate_app.context import User, config, current_user, engine
from labelling.assignment import Assigned, next_pair, progress, record_judgment, side_to_choice, undo_last
from storage.models import Choice

NOTE_KEY = "annotate_note"
_SHOWN_AT = "annotate_shown_at"  # {comparison_id: monotonic time of the first render}
_FLASH = "annotate_flash"
BOX_HEIGHT_PX = 200

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


def _ms_since_shown(comparison_id: int) -> int | None:
    shown = st.session_state.get(_SHOWN_AT, {}).pop(comparison_id, None)
    return None if shown is None else round((time.monotonic() - shown) * 1000)


def _decide(user: User, pair: Assigned, action: str) -> None:
    """Button callback: runs before the rerun that renders the next pair."""
    choice = side_to_choice(action, pair.left) if action in ("left", "right") else Choice(action)
    record_judgment(
        engine(),
        user.id,
        pair.comparison_id,
        choice,
        left=pair.left,
        ms_to_decide=_ms_since_shown(pair.comparison_id),
        note=st.session_state.get(NOTE_KEY) or None,
    )
    st.session_state[NOTE_KEY] = ""
    st.session_state[_FLASH] = f"Saved: {FLASH_TEXT[action]}"


def _undo(user: User) -> None:
    undone = undo_last(engine(), user.id, config().annotate)
    st.session_state[_FLASH] = (
        "Undone: the previous pair is back; decide again." if undone else "Nothing to undo yet."
    )


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
    st.session_state.setdefault(_SHOWN_AT, {}).setdefault(pair.comparison_id, time.monotonic())
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
    for col, (label, shortcut, action) in zip(st.columns(len(BUTTONS)), BUTTONS, strict=True):
        col.button(
            label,
            key=f"choose_{action}",
            shortcut=shortcut,
            on_click=_decide,
            args=(user, pair, action),
            type="primary" if action in ("left", "right") else "secondary",
            width="stretch",
        )
    st.text_input(
        "Note (optional, one line)",
        key=NOTE_KEY,
        max_chars=500,
        placeholder="e.g. B is cut off mid-sentence",
    )


def render() -> None:
    user = current_user()
    settings = config().annotate
    _render_progress(user)
    pair = next_pair(engine(), user.id, settings)
    if pair is None:
        st.success(
            "Nothing left to label for you right now. Thank you! New pairs appear here when generated."
        )
    else:
        _render_pair(user, pair)
    undo_col, flash_col = st.columns([1, 4], vertical_alignment="center")
    undo_col.button("Undo last", key="undo", shortcut="U", on_click=_undo, args=(user,))
    if flash := st.session_state.pop(_FLASH, None):
        flash_col.caption(flash)
    with st.expander("Guidelines"):
        st.markdown(settings.guidelines)  # the operator's text, so Markdown is intended here
