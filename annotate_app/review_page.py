"""Review your work: an annotator's recent decisions (prompt, their choice, when); the latest one can be
withdrawn within the undo policy, which sends its pair back to the Annotate page. Admins can look at any
annotator's decisions (read-only)."""

from __future__ import annotations

import streamlit as st
from sqlmodel import select

from annotate_app.annotate_page import described_choice, preview
from annotate_app.context import config, current_user, engine
from labelling.assignment import recent_decisions, undo_last, undoable
from storage.db import session_scope
from storage.models import Annotator, AnnotatorKind

LISTED = 50


def _annotators() -> dict[str, int]:
    with session_scope(engine()) as session:
        humans = select(Annotator.name, Annotator.id).where(Annotator.kind == AnnotatorKind.human)
        rows = session.exec(humans.order_by(Annotator.name)).all()
    return dict(rows)


def _undo(annotator_id: int, judgment_id: int) -> None:
    undone = undo_last(engine(), annotator_id, config().annotate, expected=judgment_id)
    st.session_state["review_flash"] = (
        "Withdrawn: that pair is back on the Annotate page; decide it again there."
        if undone
        else "Too late to change that one (the undo policy allows your latest decision only, for a while)."
    )


def render() -> None:
    user = current_user()
    st.subheader("Your recent decisions")
    who, whose = user.id, "your"
    if user.is_admin:
        people = _annotators()
        names = list(people)
        name = st.selectbox("Annotator", names, index=names.index(user.name) if user.name in names else 0)
        who, whose = people[name], f"{name}'s"
    settings = config().annotate
    decisions = recent_decisions(engine(), who, LISTED)
    if not decisions:
        st.info(f"No decisions yet in {whose} work.")
        return
    st.caption(
        f"The latest {len(decisions)} of {whose} current decisions, newest first. A and B are the sides as "
        f"shown then. Your latest decision can be changed within {settings.undo_seconds // 60} min."
    )
    rows = [
        {
            "when": d.created_at.astimezone().strftime("%Y-%m-%d %H:%M:%S"),
            "prompt": preview(d.subject or d.prompt),
            "choice": described_choice(d.choice, d.left, d.strength),
            "note": d.note or "",
        }
        for d in decisions
    ]
    st.dataframe(rows, hide_index=True, width="stretch")
    last = undoable(engine(), user.id, settings) if who == user.id else None
    if last is not None:
        st.button(
            f"Change my latest decision ({described_choice(last.choice, last.left, None)} on "
            f"“{preview(last.prompt)}”)",
            on_click=_undo,
            args=(user.id, last.judgment_id),
            key=f"review_undo_{last.judgment_id}",
        )
    if flash := st.session_state.pop("review_flash", None):
        st.caption(flash)
