"""Test data for the app: pairs built through the same repo helpers the importers and generator use,
and the environment the app reads its config from."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from streamlit import config as st_config

from annotate_app.context import ENV_SET
from storage.db import session_scope
from storage.models import Prompt, Purpose, Role, Split, VersionKind, prompt_key, text_hash
from storage.repo import (
    get_or_create_annotator,
    get_or_create_candidate,
    get_or_create_comparison,
    get_or_create_round,
    get_or_create_version,
)
from storage.templates import render


def seed_pairs(
    engine: Engine,
    *,
    train: int = 4,
    eval: int = 0,
    round_id: int = 0,
    texts: tuple[str, str] | None = None,
    template: str | None = None,
) -> list[int]:
    """``train`` + ``eval`` comparisons, one prompt each; returns their ids in creation order. With
    ``template``, each prompt is that template around a video idea, as ``prompts import`` stores it."""
    ids: list[int] = []
    with session_scope(engine, write=True) as session:
        get_or_create_round(session, round_id)
        version = get_or_create_version(session, "base", VersionKind.base, "tiny")
        for i, purpose in enumerate([Purpose.train] * train + [Purpose.eval] * eval):
            raw = f"Idea {round_id}-{i}: *bold* {purpose.value}"
            text = render(template, raw) if template else f"Given the idea write a title.\n\n{raw}"
            split = Split.eval if purpose == Purpose.eval else Split.train
            prompt = Prompt(text=text, normalized_hash=text_hash(prompt_key(text)), split=split)
            if template:
                prompt.raw, prompt.template = raw, template
            session.add(prompt)
            session.flush()
            first, second = texts or (f"Title one for {i}", f"Title two for {i}")
            cand_1, _ = get_or_create_candidate(session, prompt, version, first, round_id=round_id)
            cand_2, _ = get_or_create_candidate(session, prompt, version, second, round_id=round_id)
            comp, _ = get_or_create_comparison(session, cand_1, cand_2, purpose, round_id)
            ids.append(comp.id)
    return ids


def add_annotator(engine: Engine, name: str, role: Role = Role.annotator) -> int:
    with session_scope(engine, write=True) as session:
        return get_or_create_annotator(session, name, role=role).id


@pytest.fixture
def app_env(monkeypatch, sqlite_url, engine) -> Iterator[str]:
    """The app on a fresh database, served on localhost with the local user allowed (like `make run`)."""
    monkeypatch.setenv("PREFLOOP_DB", sqlite_url)
    monkeypatch.setenv(ENV_SET, json.dumps(["annotate.eval_share=0", "model.base=tiny"]))
    monkeypatch.delenv("PREFLOOP_CONFIG", raising=False)
    previous = st_config.get_option("server.address")
    st_config.set_option("server.address", "127.0.0.1")
    yield sqlite_url
    st_config.set_option("server.address", previous)
