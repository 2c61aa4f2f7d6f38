"""The policy's implicit rewards (labelling.uncertainty) against log-probs computed independently."""

from __future__ import annotations

from pathlib import Path

import pytest

from labelling.uncertainty import completion_ids, implicit_rewards
from models.catalog import TINY_DIR
from models.loading import load_model, load_tokenizer
from storage.templates import render
from testkit.demo_adapter import save_random_adapter

MESSAGES = [{"role": "user", "content": render("youtube-title", "vector databases")}]
TITLES = ["Vector Databases Explained", "Why Vector Search Is Fast: 5 Tricks", "DBs"]


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_random_adapter(TINY_DIR, tmp_path_factory.mktemp("adapter") / "lora", rank=8, seed=2)


def log_prob(model, tok, text: str) -> float:
    """Sum of the completion's token log-probs, one sequence at a time (no padding, no batching)."""
    import torch

    prompt, completion = completion_ids(tok, MESSAGES, text)
    ids = torch.tensor([prompt + completion])
    with torch.inference_mode():
        logits = model(input_ids=ids).logits[0, :-1].float()
    picked = torch.log_softmax(logits, -1).gather(-1, ids[0, 1:, None])[:, 0]
    return float(picked[len(prompt) - 1 :].sum())


def test_rewards_are_beta_times_the_log_ratio_to_the_base(adapter_dir: Path):
    items = [(MESSAGES, t) for t in TITLES]
    rewards = implicit_rewards("tiny", str(adapter_dir), items, beta=0.1, batch_size=2)
    tok = load_tokenizer("tiny")
    tuned = load_model("tiny", str(adapter_dir), dtype="float32", merge=True)
    base = load_model("tiny", dtype="float32")
    expected = [0.1 * (log_prob(tuned, tok, t) - log_prob(base, tok, t)) for t in TITLES]
    assert rewards == pytest.approx(expected, abs=1e-3)
    assert any(abs(r) > 0.01 for r in rewards)  # the random adapter moves them


def test_the_completion_ends_with_the_end_of_turn_training_scores():
    tok = load_tokenizer("tiny")
    prompt, completion = completion_ids(tok, MESSAGES, "Vector Databases Explained")
    assert tok.decode(completion).startswith("Vector Databases Explained")
    assert len(tok.decode(completion)) > len("Vector Databases Explained")  # the end-of-turn marker too
