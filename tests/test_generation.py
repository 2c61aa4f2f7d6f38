"""Generation with the real tiny model: the transformers backend (with and without a LoRA adapter),
the storing API (dedupe, pairs, one transaction), validation errors, and the CLI on a fresh database."""

from __future__ import annotations

import os
import subprocess
import sys
from math import comb
from pathlib import Path

import pytest
from sqlmodel import func, select

from core.config import Config
from core.errors import PrefloopError
from core.words import is_degenerate
from generation.api import answer, generate_candidates, resolve_policy
from generation.backends.base import Policy, SamplingParams
from generation.backends.transformers_backend import (
    TransformersBackend,
    newline_token_ids,
    nucleus,
    sample_shrinking,
    shared_prompt_cache,
    stop_token_ids,
)
from labelling.pairs import PairTexts, select_pairs
from labelling.selection import rank_pairs
from models.catalog import TINY_DIR
from models.loading import load_model, resolve_model
from storage.db import session_scope
from storage.imports import import_prompts
from storage.models import Candidate, Comparison, ModelVersion, Prompt, Purpose, Round, Split, VersionKind
from storage.repo import get_or_create_version
from storage.templates import render
from testkit.demo_adapter import save_random_adapter

REPO = Path(__file__).resolve().parent.parent
IDEAS = ["fine-tuning LLMs", "model pruning", "vector databases", "how GPUs work", "data cleaning tips"]
BASE = Policy(name="base", base_model="tiny")
MESSAGES = [[{"role": "user", "content": render("youtube-title", idea)}] for idea in IDEAS]


@pytest.fixture(scope="module")
def backend() -> TransformersBackend:
    b = TransformersBackend(batch_size=16, dtype="float32")
    yield b
    b.close()


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA on the 7 projections with random A and B (B != 0), so it visibly changes the output."""
    return save_random_adapter(TINY_DIR, tmp_path_factory.mktemp("adapter") / "lora", rank=8, seed=1)


@pytest.fixture
def prompts_engine(engine, tmp_path: Path):
    csv = tmp_path / "ideas.csv"
    csv.write_text("Idea\n" + "\n".join(IDEAS) + "\n", encoding="utf-8")
    import_prompts(engine, csv, column="Idea", template="youtube-title", split="train")
    return engine


def config(**generation) -> Config:
    return Config.model_validate(
        {"model": {"base": "tiny"}, "generation": {"backend": "transformers", "batch_size": 10, **generation}}
    )


def texts(out) -> list[list[str]]:
    return [[g.text for g in gs] for gs in out]


def test_sampling_is_seeded_batched_and_ends_at_end_of_turn(backend: TransformersBackend) -> None:
    import torch

    threads = torch.get_num_threads()
    out = backend.generate(MESSAGES, BASE, SamplingParams(n=3, seed=7))
    assert torch.get_num_threads() == threads  # generate's one-thread setting is restored
    assert [len(gs) for gs in out] == [3] * len(IDEAS)
    assert texts(out) == texts(backend.generate(MESSAGES, BASE, SamplingParams(n=3, seed=7)))
    assert texts(out) != texts(backend.generate(MESSAGES, BASE, SamplingParams(n=3, seed=8)))
    flat = [g for gs in out for g in gs]
    assert sum(g.finish_reason == "stop" for g in flat) >= 0.8 * len(flat)
    assert all(0 < g.n_tokens <= 48 and "<|im_end|>" not in g.text for g in flat)
    cut = [g for gs in backend.generate(MESSAGES, BASE, SamplingParams(n=2, max_new_tokens=2)) for g in gs]
    assert all(g.n_tokens == 2 for g in cut if g.finish_reason == "length")
    assert sum(g.finish_reason == "length" for g in cut) >= len(cut) // 2


def test_prompt_run_once_samples_what_plain_generate_samples(backend: TransformersBackend) -> None:
    """The shared prompt cache is an optimisation only: same seed, same tokens as num_return_sequences."""
    import torch

    model, tok = backend._model_for(BASE)
    texts_in = [tok.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in MESSAGES]
    batch = tok(texts_in, return_tensors="pt", padding=True, add_special_tokens=False)
    settings = {"do_sample": True, "top_k": None, "max_new_tokens": 20, "pad_token_id": tok.pad_token_id}
    with torch.inference_mode():
        torch.manual_seed(3)
        plain = model.generate(**batch, num_return_sequences=4, **settings)
        torch.manual_seed(3)
        shared = model.generate(
            **shared_prompt_cache(model, batch["input_ids"], batch["attention_mask"], 4), **settings
        )
    assert torch.equal(plain, shared)


@pytest.mark.parametrize("temperature", [0.7, 1.0, 0.0])
def test_finished_rows_leave_the_batch_and_the_tokens_stay_generates(
    backend: TransformersBackend, temperature: float
) -> None:
    """``sample_shrinking`` drops ended rows from the forward pass; same seed, same tokens as
    ``generate`` (sampled and greedy), and rows really end at different steps."""
    import torch

    model, tok = backend._model_for(BASE)
    texts_in = [tok.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in MESSAGES]
    batch = tok(texts_in, return_tensors="pt", padding=True, add_special_tokens=False)
    ends = stop_token_ids(model, tok) + newline_token_ids(tok, ("\n",))
    sampling = SamplingParams(n=4, temperature=temperature, top_p=0.9, max_new_tokens=24)
    with torch.inference_mode():
        torch.manual_seed(5)
        plain = model.generate(
            **shared_prompt_cache(model, batch["input_ids"], batch["attention_mask"], 4),
            do_sample=temperature > 0,
            temperature=temperature if temperature > 0 else None,
            top_p=0.9 if temperature > 0 else None,
            top_k=None,
            max_new_tokens=24,
            eos_token_id=ends,
            pad_token_id=tok.pad_token_id,
        )[:, batch["input_ids"].shape[1] :]
        torch.manual_seed(5)
        shrunk = sample_shrinking(
            model,
            shared_prompt_cache(model, batch["input_ids"], batch["attention_mask"], 4),
            sampling,
            ends=ends,
            pad_id=tok.pad_token_id,
        )
    assert torch.equal(plain, shrunk)
    ended_at = {int((row != tok.pad_token_id).sum()) for row in shrunk}
    assert len(ended_at) > 1  # rows of different lengths: some left the batch early


@pytest.mark.parametrize("spread", [3.0, 0.01])  # peaked rows; rows so flat the nucleus leaves the head
def test_nucleus_is_top_p_warpers_filter(spread: float) -> None:
    import torch
    from transformers import TopPLogitsWarper

    scores = torch.randn(16, 5000, generator=torch.Generator().manual_seed(0)) * spread
    for top_p in (0.5, 0.9, 0.99):
        assert torch.equal(nucleus(scores, top_p, head=64), TopPLogitsWarper(top_p)(None, scores))


def test_batched_equals_one_prompt_at_a_time_when_greedy(backend: TransformersBackend) -> None:
    greedy = SamplingParams(n=1, temperature=0.0)
    batched = texts(backend.generate(MESSAGES, BASE, greedy))
    single = [texts(backend.generate([m], BASE, greedy))[0] for m in MESSAGES]
    assert batched == single  # left padding does not change what a prompt gets


def test_adapter_changes_output_merged_or_not(backend: TransformersBackend, adapter_dir: Path) -> None:
    greedy = SamplingParams(n=1, temperature=0.0)
    tuned = Policy(name="round-1", base_model="tiny", adapter_path=str(adapter_dir), lora_id=2)
    base_out = texts(backend.generate(MESSAGES, BASE, greedy))
    merged = texts(backend.generate(MESSAGES, tuned, greedy))
    unmerged = TransformersBackend(batch_size=16, dtype="float32", merge=False)
    assert merged != base_out
    assert texts(unmerged.generate(MESSAGES, tuned, greedy)) == merged
    sampled = SamplingParams(n=3, seed=5)
    assert texts(backend.generate(MESSAGES, tuned, sampled)) == texts(
        backend.generate(MESSAGES, tuned, sampled)
    )
    assert type(load_model("tiny", str(adapter_dir), dtype="float32", merge=False)).__name__.startswith(
        "Peft"
    )


def test_generate_candidates_stores_round_with_pairs_and_dedupes(prompts_engine) -> None:
    cfg = config()
    summary = generate_candidates(prompts_engine, cfg, round_id=0, n=5, progress=False, pairs=rank_pairs)
    assert summary.prompts == len(IDEAS) and summary.generated == 5 * len(IDEAS)
    assert summary.candidates_added + summary.duplicates_dropped + summary.empty_dropped == summary.generated
    assert summary.tokens > 0 and summary.tokens_per_s > 0
    with session_scope(prompts_engine) as s:
        cands = s.exec(select(Candidate)).all()
        assert len(cands) == summary.candidates_added
        base = s.exec(select(ModelVersion).where(ModelVersion.name == "base")).one()
        assert base.kind == VersionKind.base and base.base_model == "tiny"
        assert all(
            c.round_id == 0 and c.backend == "transformers" and c.model_version_id == base.id for c in cands
        )
        assert all(c.sampling["n"] == 5 and c.sampling["seed"] == c.seed for c in cands)
        assert {c.finish_reason for c in cands} <= {"stop", "length"}
        expected_pairs = 0
        sound = {c.id for c in cands if c.finish_reason != "length" and not is_degenerate(c.text)}
        for p in s.exec(select(Prompt)).all():
            k = sum(c.prompt_id == p.id and c.id in sound for c in cands)
            expected_pairs += comb(k, 2)
            pairs = s.exec(select(Comparison).where(Comparison.prompt_id == p.id)).all()
            assert len(pairs) == comb(k, 2) and all(c.round_id == 0 for c in pairs)
            assert all({c.candidate_a_id, c.candidate_b_id} <= sound for c in pairs)
        assert summary.pairs_queued == expected_pairs
        assert summary.unpaired == len(cands) - len(sound)
    again = generate_candidates(prompts_engine, cfg, round_id=0, n=5, progress=False, pairs=rank_pairs)
    assert again.candidates_added == 0 and again.pairs_queued == 0
    assert again.duplicates_dropped == again.generated - again.empty_dropped


def test_pair_budget_and_no_pairs(prompts_engine) -> None:
    summary = generate_candidates(
        prompts_engine, config(pairs_per_prompt=3), round_id=1, n=5, progress=False, pairs=rank_pairs
    )
    assert summary.pairs_queued <= 3 * len(IDEAS)
    with session_scope(prompts_engine) as s:
        per_prompt = s.exec(select(Comparison.prompt_id, func.count()).group_by(Comparison.prompt_id)).all()
    assert all(n <= 3 for _, n in per_prompt)
    bare = generate_candidates(prompts_engine, config(), round_id=2, n=2, progress=False)
    assert bare.pairs_queued == 0


def test_train_pairs_leave_out_texts_cut_off_but_eval_pairs_take_them(prompts_engine) -> None:
    cut = config(max_new_tokens=2)  # every title is cut at 2 tokens
    train = generate_candidates(prompts_engine, cut, round_id=0, n=4, progress=False, pairs=rank_pairs)
    assert train.truncated == train.generated and train.candidates_added > 0
    assert train.pairs_queued == 0 and train.unpaired == train.candidates_added
    every = config_with({"sound_pairs_only": False}, max_new_tokens=2)
    kept = generate_candidates(prompts_engine, every, round_id=1, n=4, progress=False, pairs=rank_pairs)
    assert kept.pairs_queued > 0 and kept.unpaired == 0
    evals = generate_candidates(
        prompts_engine, cut, round_id=2, n=4, purpose=Purpose.eval, progress=False, pairs=rank_pairs
    )
    assert evals.pairs_queued > 0 and evals.unpaired == 0


def config_with(labelling: dict, **generation) -> Config:
    cfg = config(**generation)
    return cfg.model_copy(update={"labelling": cfg.labelling.model_validate(labelling)})


def test_pairs_are_ranked_by_the_selection_and_a_budget_queues_its_head(prompts_engine) -> None:
    cfg = config_with({"pair_selection": "most-different", "labels_per_round": 7})
    summary = generate_candidates(prompts_engine, cfg, round_id=0, n=5, progress=False, pairs=rank_pairs)
    assert summary.pairs_queued == 7 and summary.selection == "most-different"
    with session_scope(prompts_engine) as s:
        texts = {c.id: c.text for c in s.exec(select(Candidate))}
        by_prompt: dict[int, list[int]] = {}
        for c in s.exec(select(Candidate).order_by(Candidate.id)):
            if c.finish_reason != "length" and not is_degenerate(c.text):  # the train pairs' texts
                by_prompt.setdefault(c.prompt_id, []).append(c.id)
        every = [
            PairTexts((a, b), pid, texts[a], texts[b])
            for pid, ids in by_prompt.items()
            for i, a in enumerate(ids)
            for b in ids[i + 1 :]
        ]
        queued = s.exec(select(Comparison).order_by(Comparison.queue_rank)).all()
    expected = select_pairs("most-different", every, budget=7)
    assert [(q.candidate_a_id, q.candidate_b_id) for q in queued] == [p.key for p in expected]
    assert [q.queue_rank for q in queued] == list(range(7))
    assert len({q.prompt_id for q in queued[: len(IDEAS)]}) == len(IDEAS)  # every idea before a second pair


def test_uncertain_selection_scores_an_adapters_candidates(prompts_engine, adapter_dir: Path) -> None:
    """With an adapter the margins are the policy's, so the order differs from text difference alone."""
    with session_scope(prompts_engine, write=True) as s:
        get_or_create_version(s, "round-1", VersionKind.adapter, "tiny", adapter_path=str(adapter_dir))
    cfg = config_with({"pair_selection": "uncertain"})
    summary = generate_candidates(
        prompts_engine, cfg, round_id=1, policy="round-1", n=5, progress=False, pairs=rank_pairs
    )
    assert summary.selection == "uncertain" and summary.selection_seconds > 0
    with session_scope(prompts_engine) as s:
        texts = {c.id: (c.prompt_id, c.text) for c in s.exec(select(Candidate))}
        ranked = s.exec(select(Comparison).order_by(Comparison.queue_rank)).all()
    assert [c.queue_rank for c in ranked] == list(range(summary.pairs_queued)) and ranked
    pool = [
        PairTexts(c.id, c.prompt_id, texts[c.candidate_a_id][1], texts[c.candidate_b_id][1]) for c in ranked
    ]
    by_text = select_pairs("most-different", pool)
    assert [c.id for c in ranked] != [p.key for p in by_text]


def test_failure_midway_stores_nothing(prompts_engine, monkeypatch) -> None:
    calls = []
    real = TransformersBackend.generate

    def fail_on_second_batch(self, prompts, policy, sampling):
        calls.append(len(prompts))
        if len(calls) == 2:
            raise RuntimeError("out of memory in the middle of the round")
        return real(self, prompts, policy, sampling)

    monkeypatch.setattr(TransformersBackend, "generate", fail_on_second_batch)
    with pytest.raises(RuntimeError):
        generate_candidates(prompts_engine, config(batch_size=4), round_id=0, n=2, progress=False)
    assert len(calls) == 2
    with session_scope(prompts_engine) as s:
        assert s.exec(select(func.count()).select_from(Candidate)).one() == 0
        assert s.exec(select(func.count()).select_from(Round)).one() == 0
        assert s.exec(select(func.count()).select_from(ModelVersion)).one() == 0


def test_bad_inputs_fail_before_any_work(prompts_engine, tmp_path: Path) -> None:
    with pytest.raises(PrefloopError, match="unreachable.*smollm2-135m"):
        generate_candidates(
            prompts_engine,
            Config.model_validate({"model": {"base": "Qwen/Qwen2.5-0.5B-Instruct"}}),
            round_id=0,
        )
    with pytest.raises(PrefloopError, match="not a model directory"):
        resolve_model(str(tmp_path))
    with session_scope(prompts_engine, write=True) as s:
        get_or_create_version(s, "round-1", VersionKind.adapter, "tiny", adapter_path=str(tmp_path / "gone"))
    with pytest.raises(PrefloopError, match="adapter_config.json"):
        generate_candidates(prompts_engine, config(), round_id=1, policy="latest", progress=False)
    with pytest.raises(PrefloopError, match="no such model version"):
        generate_candidates(prompts_engine, config(), round_id=1, policy="round-9", progress=False)
    with pytest.raises(PrefloopError, match="no eval prompts"):
        generate_candidates(prompts_engine, config(), round_id=1, split=Split.eval, progress=False)
    with session_scope(prompts_engine, write=True) as s:
        long_prompt = s.exec(select(Prompt)).first()
        long_prompt.text = "word " * 600
        s.add(long_prompt)
    with pytest.raises(PrefloopError, match=rf"prompt {long_prompt.id}: .* exceed the model's context"):
        generate_candidates(prompts_engine, config(), round_id=1, progress=False)
    with session_scope(prompts_engine) as s:
        assert s.exec(select(func.count()).select_from(Candidate)).one() == 0


def test_resolve_policy_and_a_streamed_answer(prompts_engine, adapter_dir: Path) -> None:
    cfg = config()
    with session_scope(prompts_engine, write=True) as s:
        base = resolve_policy(s, cfg, "latest")
        assert base.name == "base" and base.id is not None
        get_or_create_version(s, "round-1", VersionKind.adapter, "tiny", adapter_path=str(adapter_dir))
        newest = get_or_create_version(
            s, "round-2", VersionKind.adapter, "tiny", adapter_path=str(adapter_dir)
        )
        assert resolve_policy(s, cfg, "latest").id == newest.id
        assert resolve_policy(s, cfg, "round-1").name == "round-1"
    seen: list[str] = []
    out, sampling = answer(cfg, newest, MESSAGES[0], seed=7, on_text=seen.append)
    assert out.text and sampling.seed == 7 and sampling.n == 1
    assert len(seen) > 1 and seen == sorted(seen, key=len), "streamed: the text grows piece by piece"
    assert seen[-1].strip() == out.text, "the last piece streamed is the stored answer"
    again, _ = answer(cfg, newest, MESSAGES[0], seed=7)
    assert again == out, "same seed, same answer, streamed or not"


def test_cli_generate_round_zero_on_a_fresh_database(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PREFLOOP_DB": f"sqlite:///{tmp_path / 'p.db'}",
    }
    cli = [sys.executable, "-m", "prefloop.cli"]
    csv = tmp_path / "ideas.csv"
    csv.write_text("Idea\n" + "\n".join(IDEAS) + "\n", encoding="utf-8")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*cli, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=300)

    assert run("init").returncode == 0
    assert (
        run(
            "prompts",
            "import",
            str(csv),
            "--column",
            "Idea",
            "--template",
            "youtube-title",
            "--split",
            "train",
        ).returncode
        == 0
    )
    done = run("generate", "--round", "0", "--n", "5")
    assert done.returncode == 0, done.stderr
    assert "candidates added" in done.stdout and "pairs queued" in done.stdout and "tokens/s" in done.stdout
    assert "generate base" in done.stderr  # the progress bar
    bad = run("generate", "--round", "1", "--policy", "nope")
    assert bad.returncode == 1 and "no such model version" in bad.stderr
