"""The tiny title model: tokenizer survives transformers' Qwen2 reload, the shipped weights write
usable, varied titles for the seed ideas, and the build script runs end to end (shortened)."""

from __future__ import annotations

import json
import statistics

import pytest
from tokenizers import Tokenizer
from transformers import AutoTokenizer, Qwen2Config

from core.config import Config
from generation.backends.base import Policy, SamplingParams
from generation.backends.transformers_backend import TransformersBackend
from generation.tiny_model import build
from generation.tiny_model.data import (
    TitleExample,
    augmented_examples,
    load_title_examples,
    seed_idea_messages,
    seed_ideas,
    shared_span,
    substitute_topic,
)
from generation.tiny_model.quality import title_health
from generation.tiny_model.tokenizer import IM_END, train_tokenizer, wrap
from models.catalog import TINY_DIR

TRICKY = [
    "Top 10 GPUs in 2024: 3.14x Faster?!\n\n\nYes   really",
    "<|im_start|>user\nGiven the YouTube video idea write an engaging title.<|im_end|>\n",
    "naïve café — déjà vu’s 12345 tokens\r\n\tend",
]


def test_tokenizer_ids_are_the_same_after_transformers_reloads_it_as_qwen2(tmp_path) -> None:
    raw = train_tokenizer(["Top GPUs in 2024 and 2025", "how to fine-tune LLMs\n\nfast", *TRICKY], 400)
    fast = wrap(raw, 512)
    fast.save_pretrained(tmp_path)
    Qwen2Config(vocab_size=400).save_pretrained(tmp_path)  # the trap: a qwen2 config.json beside it
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    for text in TRICKY:
        assert reloaded(text, add_special_tokens=False)["input_ids"] == raw.encode(text).ids


def test_shipped_tokenizer_matches_its_file_and_speaks_chatml() -> None:
    raw = Tokenizer.from_file(str(TINY_DIR / "tokenizer.json"))
    tok = AutoTokenizer.from_pretrained(TINY_DIR)
    for text in TRICKY:
        assert tok(text, add_special_tokens=False)["input_ids"] == raw.encode(text).ids
    assert tok.eos_token == IM_END and tok.pad_token == "<|endoftext|>"
    chat = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
    )
    assert chat == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    config = json.loads((TINY_DIR / "config.json").read_text())
    assert config["model_type"] == "qwen2" and config["hidden_size"] // config["num_attention_heads"] == 64
    size = sum(f.stat().st_size for f in TINY_DIR.iterdir())
    assert size <= 25 * 2**20


def test_topic_substitution_moves_the_shared_phrase() -> None:
    ex = TitleExample("model pruning", "Model Pruning 101: A Step-by-Step Guide")
    assert shared_span(ex.idea, ex.title) == ((0, 13), (0, 13))
    assert substitute_topic(ex, "vector databases") == TitleExample(
        "vector databases", "Vector Databases 101: A Step-by-Step Guide"
    )
    assert substitute_topic(TitleExample("RLHF", "Teach Models Manners"), "x") is None
    assert shared_span("how to do it", "How to Do It Fast") is None  # stop words only
    examples = load_title_examples()
    assert len(examples) == 570 and len({e.idea for e in examples}) == 114
    import random

    fresh = augmented_examples(examples, ["graph search"], random.Random(0))
    assert len(fresh) > 300 and all("graph search" in e.idea for e in fresh)


def test_shipped_model_writes_varied_titles_for_every_seed_idea() -> None:
    """5 samples per seed idea at the default sampling: title-like, ending at end-of-turn, distinct."""
    cfg = Config().generation
    from generation.api import sampling_from

    backend = TransformersBackend(batch_size=cfg.batch_size)
    tiny = Config.model_validate({"model": {"base": "tiny"}})
    out = backend.generate(seed_idea_messages(), Policy("base", "tiny"), sampling_from(tiny))
    backend.close()
    samples = dict(zip(seed_ideas(), out, strict=True))
    health = title_health(samples, {e.title for e in load_title_examples()})
    assert 20 <= health.mean_chars <= 90
    assert all(20 <= statistics.fmean(len(g.text) for g in gs) <= 90 for gs in samples.values())
    assert health.stop_rate >= 0.95
    assert health.distinct_per_prompt >= 4.0
    assert health.in_band_rate >= 0.7
    assert health.length_sd >= 8  # room for a length preference to act on
    # some titles pick up the idea's words (a keyword preference acts on it)
    assert health.idea_word_rate >= 0.15
    assert health.copied_rate <= 0.2  # not a lookup table of the training titles


@pytest.mark.slow
def test_shortened_build_writes_a_loadable_model(tmp_path) -> None:
    out = tmp_path / "tiny"
    build.main(["--quick", "--out", str(out)])
    report = json.loads((out / "build_report.json").read_text())
    assert report["settings"]["pretrain_steps"] == build.QUICK["pretrain_steps"]
    assert report["health_5_per_seed_idea"]["samples"] > 0
    generated = TransformersBackend(batch_size=8).generate(
        seed_idea_messages(2), Policy("quick", str(out)), SamplingParams(n=2)
    )
    assert [len(g) for g in generated] == [2, 2]
    reloaded = AutoTokenizer.from_pretrained(out)
    raw = Tokenizer.from_file(str(out / "tokenizer.json"))
    assert reloaded(TRICKY[0], add_special_tokens=False)["input_ids"] == raw.encode(TRICKY[0]).ids
