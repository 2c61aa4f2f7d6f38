"""Compare (admins): type a prompt, see two model versions answer side by side, blind until revealed.

Generation goes through ``generation.api`` and is imported only when the button is pressed, so the
Annotate page never pays for torch/transformers.
"""

from __future__ import annotations

import random

import streamlit as st
from sqlmodel import select

from annotate_app.context import config, engine
from annotate_app.guard import require_admin
from storage.db import session_scope
from storage.models import ModelVersion, VersionKind
from storage.templates import TEMPLATES, render, template_system

_RESULT = "compare_result"
_REVEALED = "compare_revealed"
NO_TEMPLATE = "(none: the text is the prompt)"


def _versions() -> list[ModelVersion]:
    with session_scope(engine()) as session:
        return list(
            session.exec(
                select(ModelVersion)
                .where(ModelVersion.kind.in_([VersionKind.base, VersionKind.adapter]))
                .order_by(ModelVersion.id)
            )
        )


def _messages(template: str, text: str) -> list[dict[str, str]]:
    """The chat a prompt imported with ``template`` would be: its system message, then the user text."""
    if template == NO_TEMPLATE:
        return [{"role": "user", "content": text}]
    system = template_system(template)
    return [
        *([{"role": "system", "content": system}] if system else []),
        {"role": "user", "content": render(template, text)},
    ]


def _generate(versions: list[ModelVersion], messages: list[dict[str, str]], n: int) -> None:
    from generation.api import generate_texts  # heavy (torch): only when asked

    outputs = {}
    bar = st.progress(0.0, text="Generating…")
    for i, version in enumerate(versions):
        outputs[version.name] = [g.text for g in generate_texts(config(), version, messages, n)]
        bar.progress((i + 1) / len(versions), text=f"Generated {i + 1} of {len(versions)}")
    bar.empty()
    names = list(outputs)
    random.shuffle(names)  # blind: the screen position says nothing about the model
    prompt = "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in messages)
    st.session_state[_RESULT] = {"prompt": prompt, "order": names, "outputs": outputs}
    st.session_state[_REVEALED] = False


def _show_result() -> None:
    result = st.session_state.get(_RESULT)
    if not result:
        return
    with st.expander("Prompt sent to the models"):
        st.text(result["prompt"])
    revealed = st.session_state.get(_REVEALED, False)
    for col, (i, name) in zip(st.columns(len(result["order"])), enumerate(result["order"]), strict=True):
        with col, st.container(border=True):
            st.caption(name if revealed else f"Model {i + 1}")
            for j, text in enumerate(result["outputs"][name]):
                st.text(text, width="stretch")
                if j < len(result["outputs"][name]) - 1:
                    st.divider()
    if not revealed:
        st.button("Reveal which model is which", on_click=lambda: st.session_state.update({_REVEALED: True}))


def render_page() -> None:
    require_admin("Compare")
    st.title("Compare models")
    versions = _versions()
    if not versions:
        st.info("No model version yet: `prefloop demo` or `prefloop generate` registers the base model.")
        return
    names = [v.name for v in versions]
    default = names[-2:] if len(names) > 1 else names
    chosen = st.multiselect("Models (base and adapters)", names, default=default, max_selections=4)
    template = st.selectbox("Template", [NO_TEMPLATE, *TEMPLATES])
    text = st.text_area("Prompt (or the idea, with a template)", height=100)
    n = st.slider("Samples per model", 1, 5, 2)
    if st.button("Generate", type="primary", disabled=not (chosen and text.strip())):
        with st.spinner("Loading the model(s) and generating (the first time takes a few seconds)…"):
            _generate([v for v in versions if v.name in chosen], _messages(template, text.strip()), n)
    _show_result()
