"""The default base, SmolLM2-135M-Instruct, in a CI-sized smoke test: prompting, sampling, both backends.

The model is the one ``make setup`` converted (tests/test_catalog.py checks the install). vLLM runs from
.venv-vllm (``make vllm-env``) on the same folder and must write the same greedy tokens in float32, for
the base model and for a LoRA adapter of it; the adapter must change what vLLM writes.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from core.config import DEFAULT_BASE, Config
from core.words import key_words
from generation.api import sampling_from
from generation.backends.base import Generated, Policy, SamplingParams
from generation.backends.transformers_backend import TransformersBackend, decode_completion, newline_token_ids
from generation.tiny_model.data import seed_ideas
from models.catalog import SMOLLM2_WHEEL, model_dir
from models.loading import load_tokenizer
from storage.models import prompt_messages
from storage.parsing import make_prompt
from tests.conftest import REPO

BASE = Policy("base", DEFAULT_BASE)
GREEDY = SamplingParams(n=1, temperature=0.0, max_new_tokens=32, stop=("\n",))
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"


def title_prompts(count: int) -> list[list[dict[str, str]]]:
    """The seed ideas as ``prompts import --template youtube-title`` stores them: system + user turn."""
    return [prompt_messages(make_prompt(idea, 1, "youtube-title")) for idea in seed_ideas(count)]


@pytest.fixture(scope="module")
def backend():
    hf = TransformersBackend(dtype="float32")
    yield hf
    hf.close()


def test_the_templates_system_message_replaces_smollms_default() -> None:
    tok = load_tokenizer(DEFAULT_BASE)
    prompt = title_prompts(1)[0]
    assert prompt[0]["role"] == "system"
    rendered = tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    assert "named SmolLM" not in rendered and prompt[0]["content"] in rendered
    # without one, the model's own template inserts its default
    assert "named SmolLM" in tok.apply_chat_template(prompt[1:], add_generation_prompt=True, tokenize=False)


def test_a_newline_ends_the_title_where_the_model_wrote_it() -> None:
    tok = load_tokenizer(DEFAULT_BASE)
    ids = tok("Fine-Tuning LLMs: A Guide.\n\nMore rambling", add_special_tokens=False)["input_ids"]
    title = decode_completion(tok, ids, [tok.eos_token_id], ("\n",))
    assert (title.text, title.finish_reason) == ("Fine-Tuning LLMs: A Guide.", "stop")
    # the token that wrote the newline is the last one counted, and generation stops on it
    assert "\n" in tok.decode(ids[: title.n_tokens]) and "\n" not in tok.decode(ids[: title.n_tokens - 1])
    assert ids[title.n_tokens - 1] in newline_token_ids(tok, ("\n",))
    assert decode_completion(tok, ids, [tok.eos_token_id]).finish_reason == "length"  # no stop text: cut


@pytest.mark.slow
def test_default_sampling_writes_one_line_titles_about_the_idea(backend) -> None:
    sampling = sampling_from(Config(), n=3)
    assert (sampling.temperature, sampling.top_p, sampling.stop) == (0.7, 0.9, ("\n",))
    ideas = seed_ideas(6)
    out = backend.generate(title_prompts(6), BASE, sampling)
    flat = [(idea, g) for idea, gs in zip(ideas, out, strict=True) for g in gs]
    assert len(flat) == 18 and all(g.text and "\n" not in g.text for _, g in flat)
    assert all(0 < g.n_tokens <= 32 for _, g in flat)
    assert sum(g.finish_reason == "stop" for _, g in flat) >= 12
    # on topic: about half repeat a content word of their idea (6 of 18 and 12 of 24 seen); text written
    # for nothing in particular would rarely name "BERT" or "embedding"
    assert sum(bool(key_words(idea) & key_words(g.text)) for idea, g in flat) >= 4
    assert out == backend.generate(title_prompts(6), BASE, sampling)  # same seed, same titles


def as_rows(out: list[list[Generated]]) -> list[list]:
    return [[g.text, g.finish_reason, g.n_tokens] for gs in out for g in gs]


@pytest.mark.vllm
@pytest.mark.slow
def test_vllm_writes_the_transformers_greedy_tokens_and_the_adapter_changes_them(backend, tmp_path) -> None:
    from testkit.demo_adapter import save_random_adapter

    subprocess.run(["make", "-s", "vllm-env"], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    base_dir = model_dir(SMOLLM2_WHEEL)
    adapter = save_random_adapter(base_dir, tmp_path / "lora", rank=8, seed=1, lora_alpha=8)
    prompts = title_prompts(8)
    prompts_file = tmp_path / "prompts.json"
    prompts_file.write_text(json.dumps(prompts))
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1"}
    script = REPO / "tests" / "vllm_greedy_check.py"
    started = time.monotonic()
    run = subprocess.run(
        [str(VLLM_PYTHON), str(script), str(base_dir), str(adapter), str(prompts_file), "32"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    vllm = json.loads(run.stdout.strip().splitlines()[-1])
    hf_base = as_rows(backend.generate(prompts, BASE, GREEDY))
    hf_lora = as_rows(backend.generate(prompts, Policy("lora", str(base_dir), str(adapter), 1), GREEDY))
    assert vllm["base"] == hf_base
    assert vllm["adapter"] == hf_lora
    changed = sum(a[0] != b[0] for a, b in zip(vllm["base"], vllm["adapter"], strict=True))
    assert changed >= 6, f"the adapter changed only {changed} of 8 greedy titles"
    artifacts = REPO / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "real_model_vllm.json").write_text(
        json.dumps({"vllm run s": round(time.monotonic() - started, 1), **vllm}, indent=2)
    )


def test_each_base_brings_its_own_sampling_defaults() -> None:
    tiny = sampling_from(Config.model_validate({"model": {"base": "tiny"}}))
    assert (tiny.temperature, tiny.top_p) == (1.0, 1.0)  # what the tiny model was built and tuned with
    pinned = sampling_from(Config.model_validate({"generation": {"temperature": 0.3}}))
    assert (pinned.temperature, pinned.top_p) == (0.3, 0.9)
