"""Compare (admins): a blind arena. Two model versions answer the same prompt side by side (streamed),
in a random order and with their own random seeds; the admin votes, then sees which was which. A vote
is an eval judgment on stored candidates (``labelling.battles``), counted by the report like any other.
After the vote the conversation can go on: the chosen answer becomes the history of the next turn,
which is blind again (sides drawn afresh).

Generation goes through ``generation.api`` and is imported only when Generate is pressed, so opening
the app never pays for torch/transformers.
"""

from __future__ import annotations

import random
import secrets
import time
from dataclasses import dataclass, field, replace

import streamlit as st
from sqlmodel import col, select

from annotate_app.context import config, current_user, engine
from annotate_app.guard import require_admin
from core.errors import PrefloopError
from labelling.battles import Answer, held_out_prompts, split_of, store_battle
from storage.db import session_scope
from storage.models import Choice, ModelVersion, Prompt, Split, VersionKind, prompt_messages
from storage.parsing import PromptRecord, make_prompt
from storage.templates import TEMPLATES

_BATTLE = "compare_battle"
_PENDING = "compare_pending"  # (record, template, version names) to generate on this run
_ERROR = "compare_error"
_TEXT_KEY, _TEMPLATE_KEY, _HELD_OUT_KEY = "compare_text", "compare_template", "compare_held_out"
_NEXT_KEY, _CONTINUE_KEY = "compare_next", "compare_continue_from"
NO_TEMPLATE = "(none: the text is the prompt)"
TYPED, HELD_OUT = "Type a prompt", "A held-out prompt"
SIDES = ("A", "B")
# (label, shortcut, action): the Annotate page's keys; "left"/"right" map to a/b by the shown order
VOTES: list[tuple[str, str, str]] = [
    ("A is better", "1", "left"),
    ("B is better", "2", "right"),
    ("Tie", "3", Choice.tie.value),
    ("Both bad", "4", Choice.both_bad.value),
]
SEED_RANGE = 2**31  # torch.manual_seed takes any 64-bit int; stored seeds stay in a 32-bit column


@dataclass
class Battle:
    record: PromptRecord  # the turn both versions answered (its history: earlier turns)
    template: str | None
    answers: list[Answer]  # in screen order: [A (left), B (right)]
    split: Split | None  # the stored prompt's split; None: a new prompt (stored as eval on the vote)
    shown_at: float = field(default_factory=time.monotonic)
    vote: str | None = None  # the action voted ("left", "right", "tie", "both_bad")
    comparison_id: int | None = None


def _versions() -> list[ModelVersion]:
    with session_scope(engine()) as session:
        return list(
            session.exec(
                select(ModelVersion)
                .where(col(ModelVersion.kind).in_([VersionKind.base, VersionKind.adapter]))
                .order_by(col(ModelVersion.id))
            )
        )


def _messages(record: PromptRecord) -> list[dict[str, str]]:
    unsaved = Prompt(text=record.text, system=record.system, history=record.history_messages())
    return prompt_messages(unsaved)


def _stored_record(prompt) -> PromptRecord:
    history = tuple((m["role"], m["content"]) for m in prompt.history or [])
    return PromptRecord(row=0, text=prompt.text, raw=prompt.raw, system=prompt.system, history=history)


def _generate(versions: list[ModelVersion], record: PromptRecord, template: str | None) -> None:
    """Both answers, streamed into two boxes as they are written, in a random order, each with its own
    fresh seed (the same seed on base and a lightly trained adapter often gives the same first text)."""
    from generation.api import answer  # heavy (torch): only when asked
    from generation.backends import resolve_backend_name

    order = random.sample(versions, 2)
    messages = _messages(record)
    backend = resolve_backend_name(config(), config().generation.backend)
    answers = []
    for side, col_, version in zip(SIDES, st.columns(2), order, strict=True):
        with col_, st.container(border=True):
            st.caption(side)
            box = st.empty()
            box.caption("writing…")
            out, sampling = answer(config(), version, messages, secrets.randbelow(SEED_RANGE), box.text)
            box.text(out.text or "(empty answer)")
        answers.append(
            Answer(version.name, out.text, sampling.as_dict(), sampling.seed, backend, out.finish_reason)
        )
    st.session_state[_BATTLE] = Battle(record, template, answers, split_of(engine(), record))


def _vote(battle: Battle, action: str) -> None:
    """Button callback: store the pair and the vote, then the page reveals the names."""
    left, right = battle.answers
    ms = round((time.monotonic() - battle.shown_at) * 1000)
    try:
        judgment = store_battle(
            engine(), battle.record, battle.template, left, right, action, current_user().id, ms
        )
    except PrefloopError as exc:  # e.g. the prompt went into the train split meanwhile: nothing stored
        st.session_state[_ERROR] = str(exc)
        return
    st.session_state[_BATTLE] = replace(battle, vote=action, comparison_id=judgment.comparison_id)


def _show_history(record: PromptRecord) -> None:
    if record.system:
        st.caption("System")
        st.text(record.system)
    for role, content in record.history:
        with st.container(border=True):
            st.caption("You" if role == "user" else "Answer you continued from")
            st.text(content)


def _show_battle(battle: Battle) -> None:
    _show_history(battle.record)
    with st.container(border=True):
        st.caption("You" if battle.record.history else "Prompt")
        st.text(battle.record.raw or battle.record.text)
    for side, col_, ans in zip(SIDES, st.columns(2), battle.answers, strict=True):
        with col_, st.container(border=True, key=f"answer_{side.lower()}"):
            st.caption(f"{side}: {ans.version}" if battle.vote else side)
            st.text(ans.text or "(empty answer)")
    if battle.vote is None:
        if battle.split == Split.train:
            st.warning(
                "This prompt is a training prompt: a vote would measure a model on what it was trained on, "
                "so none is taken. Pick a held-out prompt or type a new one."
            )
            return
        for vote_col, (label, key, action) in zip(st.columns(len(VOTES)), VOTES, strict=True):
            vote_col.button(
                label,
                key=f"vote_{action}",
                shortcut=key,
                on_click=_vote,
                args=(battle, action),
                type="primary" if action in ("left", "right") else "secondary",
                width="stretch",
            )
        st.caption("Vote to see which model wrote which answer. The vote is an eval judgment.")
        return
    label = next(label for label, _, action in VOTES if action == battle.vote)
    st.success(
        f"Saved to the eval pool (pair {battle.comparison_id}): {label}. "
        f"A was **{battle.answers[0].version}**, B was **{battle.answers[1].version}**."
    )


def _ask(record: PromptRecord, template: str | None, versions: list[str]) -> None:
    """Form callback: what to generate on this run (before the page is drawn, so the answers stream
    where the battle is shown)."""
    st.session_state[_PENDING] = (record, template, versions)


def _ask_new(source: str, versions: list[str]) -> None:
    if source == HELD_OUT:
        picked = st.session_state.get(_HELD_OUT_KEY)
        if picked is not None:
            with session_scope(engine()) as session:
                prompt = session.get(Prompt, picked)
            _ask(_stored_record(prompt), prompt.template, versions)
        return
    text = (st.session_state.get(_TEXT_KEY) or "").strip()
    if not text:
        st.session_state[_ERROR] = "Type a prompt first."
        return
    template = st.session_state.get(_TEMPLATE_KEY)
    template = None if template in (None, NO_TEMPLATE) else template
    _ask(make_prompt(text, 0, template), template, versions)


def _ask_follow_up(battle: Battle) -> None:
    """The next turn: the answer continued from joins the history; the same two versions answer."""
    text = (st.session_state.get(_NEXT_KEY) or "").strip()
    if not text:
        st.session_state[_ERROR] = "Type a message first."
        return
    chosen = battle.answers[0 if st.session_state.get(_CONTINUE_KEY, "").startswith("A") else 1]
    record = battle.record
    history = (*record.history, ("user", record.text), ("assistant", chosen.text))
    next_turn = PromptRecord(row=0, text=text, system=record.system, history=history)
    _ask(next_turn, None, [a.version for a in battle.answers])
    st.session_state[_NEXT_KEY] = ""


def _follow_up(battle: Battle) -> None:
    with st.form("follow_up", border=True):
        st.markdown("**Continue the conversation** (the next turn is blind again)")
        st.radio(
            "Continue from",
            ["A's answer", "B's answer"],
            index=1 if battle.vote == "right" else 0,
            horizontal=True,
            key=_CONTINUE_KEY,
        )
        st.text_area("Your next message", height=80, key=_NEXT_KEY)
        st.form_submit_button("Send", type="primary", on_click=_ask_follow_up, args=(battle,))


def _new_prompt(versions: list[str], open_: bool) -> None:
    with st.expander("New prompt", expanded=open_, icon=":material/edit:"):
        source = st.radio("Prompt", [TYPED, HELD_OUT], horizontal=True, label_visibility="collapsed")
        # a form: the typed text is sent with the click, so Generate works without leaving the box first
        with st.form("new_prompt", border=False):
            if source == TYPED:
                st.selectbox("Template", [NO_TEMPLATE, *TEMPLATES], key=_TEMPLATE_KEY)
                st.text_area("Prompt (or the idea, with a template)", height=90, key=_TEXT_KEY)
            else:
                prompts = {p.id: p for p in held_out_prompts(engine())}
                if not prompts:
                    st.caption("No held-out (eval-split) prompt yet: type one instead.")
                st.selectbox(
                    "Held-out prompt (eval split)",
                    list(prompts),
                    format_func=lambda pid: (prompts[pid].raw or prompts[pid].text)[:120],
                    key=_HELD_OUT_KEY,
                )
            st.form_submit_button("Generate", type="primary", on_click=_ask_new, args=(source, versions))


def render_page() -> None:
    require_admin("Compare")
    st.title("Compare")
    st.caption(
        "A blind arena: two model versions answer the same prompt in random order; vote for the better "
        "answer, then see which was which. Votes go into the eval pool."
    )
    versions = _versions()
    if not versions:
        st.info("No model version yet: `prefloop demo` or `prefloop generate` registers the base model.")
        return
    if len(versions) < 2:
        st.info(
            f"Only `{versions[0].name}` so far: Compare puts two versions side by side. "
            "Train a round (`make train-round`) and its adapter appears here next to base."
        )
        return
    names = [v.name for v in versions]
    chosen = st.multiselect(
        "Two versions (shown as A and B in random order)",
        names,
        default=[names[0], names[-1]],
        max_selections=2,
    )
    if error := st.session_state.pop(_ERROR, None):
        st.error(error)
    if pending := st.session_state.pop(_PENDING, None):
        record, template, pair = pending
        streaming = st.empty()
        with (
            streaming.container(),
            st.spinner("Loading the models and writing (the first time takes a while)…"),
        ):
            _generate([v for v in versions if v.name in pair], record, template)
        streaming.empty()
    battle: Battle | None = st.session_state.get(_BATTLE)
    if battle is not None:
        _show_battle(battle)
        if battle.vote is not None:
            _follow_up(battle)
    if len(chosen) == 2:
        _new_prompt(chosen, open_=battle is None)
    else:
        st.caption("Choose two versions to start a new prompt.")
