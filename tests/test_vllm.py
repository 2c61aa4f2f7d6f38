"""vLLM serving, tested against real vLLM (the CPU build in .venv-vllm), plus the adapter checks.

The fast tests need no vLLM. The ``vllm``/``slow`` ones build ``.venv-vllm`` (``make vllm-env``, ~2 min
once per fresh clone), start ``prefloop serve-model`` on the tiny model, load LoRA adapters made in
the test at runtime, and compare greedy output token for token with the transformers backend (float32).
Timings land in test-artifacts/vllm_timings.json.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.errors import PrefloopError
from core.net import free_port
from generation.backends.base import Policy, SamplingParams
from generation.backends.vllm_server import VllmServerBackend, adapter_version_name
from generation.serve import ServerSpec, is_healthy
from models.adapters import (
    check_max_lora_rank,
    lora_setting_problems,
    validate_lora_settings,
    validate_servable_adapter,
)
from tests.conftest import REPO

VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
TIMINGS: dict[str, float] = {}
GREEDY = SamplingParams(n=1, temperature=0.0, max_new_tokens=32)
BASE = "tiny"  # the offline default model the server and the transformers backend both load


def write_adapter_config(directory: Path, **fields: object) -> Path:
    """A saved-adapter directory with the given adapter_config.json fields (weights file empty)."""
    directory.mkdir(parents=True, exist_ok=True)
    config = {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]}
    (directory / "adapter_config.json").write_text(json.dumps({**config, **fields}))
    (directory / "adapter_model.safetensors").write_bytes(b"")
    return directory


# -- adapter checks (no vLLM needed) ---------------------------------------------------------------


def test_plain_lora_on_the_projections_is_servable() -> None:
    from peft import LoraConfig

    validate_lora_settings(LoraConfig(r=8, target_modules=["q_proj", "k_proj", "down_proj"]), max_rank=8)
    validate_lora_settings({"r": 16, "target_modules": "all-linear", "bias": "none"}, max_rank=16)


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"use_dora": True}, "use_dora"),
        ({"modules_to_save": ["lm_head"]}, "modules_to_save"),
        ({"bias": "lora_only"}, 'bias="lora_only"'),
        ({"r": 32}, "r=32"),
        ({"rank_pattern": {"q_proj": 64}}, "rank_pattern=64"),
        ({"target_modules": ["q_proj", "embed_tokens"]}, "embed_tokens"),
        ({"target_modules": ".*(lm_head|q_proj)"}, "lm_head"),
        ({"peft_type": "IA3"}, "peft_type=IA3"),
        ({"init_lora_weights": "pissa"}, "init_lora_weights=pissa"),
    ],
)
def test_unservable_settings_are_named(fields: dict, named: str) -> None:
    problems = lora_setting_problems({"r": 8, "target_modules": ["q_proj"], **fields}, max_rank=16)
    assert len(problems) == 1 and named in problems[0]


def test_peft_lora_config_object_is_checked_like_a_mapping() -> None:
    from peft import LoraConfig

    with pytest.raises(PrefloopError, match=r"train config: r=32: above .*and 1 more: use_dora=true"):
        validate_lora_settings(
            LoraConfig(r=32, use_dora=True, target_modules=["q_proj"]), max_rank=16, source="train config"
        )


def test_saved_adapter_error_names_its_config_file(tmp_path: Path) -> None:
    adapter = write_adapter_config(tmp_path / "round-1", use_dora=True)
    with pytest.raises(PrefloopError) as err:
        validate_servable_adapter(adapter, max_rank=16)
    assert str(adapter / "adapter_config.json") in str(err.value) and "DoRA" in str(err.value)


def test_missing_or_incomplete_adapter_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PrefloopError, match="no adapter_config.json"):
        validate_servable_adapter(tmp_path, max_rank=16)
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 8, "target_modules": ["q_proj"]}))
    with pytest.raises(PrefloopError, match="no adapter_model.safetensors"):
        validate_servable_adapter(tmp_path, max_rank=16)


def test_adapter_must_fit_the_base_layers(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    from models.adapters import adapter_fit_problems

    base = tmp_path / "base"
    base.mkdir()
    save_file({"model.layers.0.self_attn.q_proj.weight": torch.zeros(16, 8)}, base / "model.safetensors")

    def adapter(name: str, a_in: int, b_out: int, layer: int = 0) -> Path:
        directory = write_adapter_config(tmp_path / name)
        prefix = f"base_model.model.model.layers.{layer}.self_attn.q_proj"
        tensors = {
            f"{prefix}.lora_A.weight": torch.zeros(2, a_in),
            f"{prefix}.lora_B.weight": torch.zeros(b_out, 2),
        }
        save_file(tensors, directory / "adapter_model.safetensors")
        return directory

    assert adapter_fit_problems(adapter("fits", 8, 16), base) == []
    assert adapter_fit_problems(adapter("narrow", 4, 16), base) == [
        "model.layers.0.self_attn.q_proj: lora_A has shape [2, 4], the base layer [16, 8]"
    ]
    assert (
        adapter_fit_problems(adapter("deep", 8, 16, layer=5), base)
        == ["model.layers.5.self_attn.q_proj: not a layer of the base model"] * 2
    )
    with pytest.raises(PrefloopError, match="does not fit base model .* trained on another base model"):
        validate_servable_adapter(tmp_path / "narrow", max_rank=8, base_dir=base)


def test_max_lora_rank_must_be_one_vllm_accepts() -> None:
    assert check_max_lora_rank(16) == 16
    with pytest.raises(PrefloopError, match="vllm_max_lora_rank=12: vLLM accepts only 1, 8, 16"):
        check_max_lora_rank(12)


def test_adapter_version_name_follows_the_weights(tmp_path: Path) -> None:
    adapter = write_adapter_config(tmp_path / "round-1")
    policy = Policy("round-1", "tiny", str(adapter), 3)
    first = adapter_version_name(policy)
    assert first == adapter_version_name(policy) and first.startswith("round-1-")
    (adapter / "adapter_model.safetensors").write_bytes(b"retrained")
    assert adapter_version_name(policy) != first


def test_request_seeds_keep_every_sample_stream_apart() -> None:
    """vLLM seeds sample j of a request with seed + j: no two (prompt, sample) pairs may share one."""
    from generation.backends.vllm_seeds import request_seed

    streams = [request_seed(seed, i) + j for seed in (0, 1) for i in range(114) for j in range(5)]
    assert len(set(streams)) == len(streams) and max(streams) < 2**31
    assert request_seed(7, 3) == request_seed(7, 3)


def test_server_command_enables_runtime_lora() -> None:
    spec = ServerSpec(model="/m", python="/py", port=8123, max_lora_rank=8, adapters={"r1": "/a"})
    cmd = spec.command()
    assert cmd[:3] == ["/py", "-m", "vllm.entrypoints.openai.api_server"]
    assert "--enable-lora" in cmd and cmd[cmd.index("--max-lora-rank") + 1] == "8"
    assert cmd[cmd.index("--lora-modules") + 1] == "r1=/a"
    assert spec.environment({})["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"


def test_serve_model_errors_before_starting(tmp_path: Path) -> None:
    from prefloop.cli import app

    runner = CliRunner()
    missing = runner.invoke(app, ["serve-model", "--python", str(tmp_path / "nope" / "python")])
    assert isinstance(missing.exception, PrefloopError) and "make vllm-env" in str(missing.exception)
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    start = ["serve-model", "--model", str(model), "--python", sys.executable]
    dora = write_adapter_config(tmp_path / "dora", use_dora=True)
    refused = runner.invoke(app, [*start, "--adapter", f"d={dora}"])
    assert isinstance(refused.exception, PrefloopError) and "use_dora" in str(refused.exception)
    malformed = runner.invoke(app, [*start, "--adapter", "no-path"])
    assert isinstance(malformed.exception, PrefloopError) and "NAME=PATH" in str(malformed.exception)


def test_no_server_at_url_says_how_to_start_one() -> None:
    backend = VllmServerBackend(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(PrefloopError, match="prefloop serve-model"):
        backend.generate([[{"role": "user", "content": "hi"}]], Policy("base", "tiny"), GREEDY)
    backend.close()


# -- real vLLM -------------------------------------------------------------------------------------


def seed_prompts(count: int) -> list[list[dict[str, str]]]:
    from generation.tiny_model.data import render_seed_prompt

    with open(REPO / "data" / "youtube-titles" / "ideas.csv", encoding="utf-8") as f:
        ideas = [row["Idea"] for row in csv.DictReader(f)]
    return [[{"role": "user", "content": render_seed_prompt(idea)}] for idea in ideas[:count]]


@pytest.fixture(scope="module")
def vllm_python() -> Path:
    """.venv-vllm, built by `make vllm-env` if missing (a no-op when its stamp is there)."""
    started = time.monotonic()
    subprocess.run(["make", "-s", "vllm-env"], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    TIMINGS["make vllm-env s"] = round(time.monotonic() - started, 1)
    return VLLM_PYTHON


@pytest.fixture(scope="module")
def base_model() -> str:
    from models.loading import resolve_model

    return resolve_model(BASE)


@pytest.fixture(scope="module")
def adapters(base_model: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Random-weight LoRA r8 on the 7 projections; a DoRA one; one built for a differently shaped model."""
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from testkit.demo_adapter import save_random_adapter

    root = tmp_path_factory.mktemp("adapters")
    other = root / "other-base"
    Qwen2ForCausalLM(
        Qwen2Config(
            vocab_size=len(AutoTokenizer.from_pretrained(base_model)),
            hidden_size=128,
            intermediate_size=256,
            num_attention_heads=2,
            num_key_value_heads=1,
            num_hidden_layers=2,
        )
    ).save_pretrained(other)
    return {
        "lora": save_random_adapter(base_model, root / "lora", seed=1),
        "dora": save_random_adapter(base_model, root / "dora", seed=1, use_dora=True),
        "foreign": save_random_adapter(other, root / "foreign", seed=1),
    }


@pytest.fixture(scope="module")
def inprocess_run(
    vllm_python: Path, base_model: str, adapters: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[subprocess.Popen, Path, float]]:
    """tests/vllm_inprocess_check.py in vLLM's interpreter, started in the background (its engine start
    overlaps the server's); the test that reads its output comes last."""
    work = tmp_path_factory.mktemp("inprocess")
    prompts_file = work / "prompts.json"
    prompts_file.write_text(json.dumps(seed_prompts(12)))
    script = REPO / "tests" / "vllm_inprocess_check.py"
    cmd = [str(vllm_python), str(script), base_model, str(adapters["lora"]), str(adapters["foreign"])]
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1"}
    with open(work / "stdout", "w") as out, open(work / "stderr", "w") as err:  # more than a pipe holds
        proc = subprocess.Popen([*cmd, str(prompts_file)], cwd=REPO, env=env, stdout=out, stderr=err)
    yield proc, work, time.monotonic()
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def serve_model(
    vllm_python: Path, adapters: dict[str, Path], inprocess_run: tuple[subprocess.Popen, Path, float]
) -> Iterator[tuple[subprocess.Popen, str]]:
    """`prefloop serve-model` on the tiny model (float32, LoRA up to rank 8) on a free port, with the
    test LoRA also served from the start as ``startup-lora``."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [str(REPO / ".venv" / "bin" / "prefloop"), "--set", "model.dtype=float32", "serve-model"]
    cmd += ["--model", BASE, "--port", str(port), "--max-lora-rank", "8", "--python", str(vllm_python)]
    cmd += ["--adapter", f"startup-lora={adapters['lora']}"]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        while not is_healthy(url):
            if proc.poll() is not None:
                pytest.fail(f"prefloop serve-model exited early:\n{proc.stdout.read()}")
            if time.monotonic() - started > 360:
                pytest.fail("vLLM did not become healthy within 360 s")
            time.sleep(0.5)
        TIMINGS["server start to /health s"] = round(time.monotonic() - started, 1)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(60)
        artifacts = REPO / "test-artifacts"
        artifacts.mkdir(exist_ok=True)
        (artifacts / "vllm_timings.json").write_text(json.dumps(TIMINGS, indent=2))


@pytest.fixture(scope="module")
def server_backend(serve_model: tuple[subprocess.Popen, str], base_model: str) -> Iterator[VllmServerBackend]:
    from models.loading import resolve_model

    backend = VllmServerBackend(serve_model[1], max_lora_rank=8, resolve_model=resolve_model)
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def transformers_texts(base_model: str, adapters: dict[str, Path]) -> dict[str, list]:
    """Greedy float32 output of the transformers backend: the reference vLLM must reproduce."""
    from generation.backends.transformers_backend import TransformersBackend

    hf = TransformersBackend(dtype="float32")
    prompts = seed_prompts(12)
    out = {
        "base": hf.generate(prompts, Policy("base", BASE), GREEDY),
        "lora": hf.generate(prompts, Policy("lora", BASE, str(adapters["lora"]), 1), GREEDY),
    }
    hf.close()
    return out


@pytest.mark.vllm
@pytest.mark.slow
def test_adapter_changes_output_and_matches_transformers(
    server_backend: VllmServerBackend, adapters: dict[str, Path], transformers_texts: dict[str, list]
) -> None:
    prompts = seed_prompts(12)
    started = time.monotonic()
    base = server_backend.generate(prompts, Policy("base", BASE), GREEDY)
    lora = server_backend.generate(prompts, Policy("lora", BASE, str(adapters["lora"]), 1), GREEDY)
    TIMINGS["greedy 2x12 prompts incl. adapter load s"] = round(time.monotonic() - started, 2)
    changed = sum(b[0].text != a[0].text for b, a in zip(base, lora, strict=True))
    assert changed >= 10, f"the adapter changed only {changed} of 12 greedy outputs"
    assert base == transformers_texts["base"]  # text, finish reason and token count, all 12 prompts
    assert lora == transformers_texts["lora"]


@pytest.mark.vllm
@pytest.mark.slow
def test_adapter_given_at_start_is_served(
    serve_model: tuple[subprocess.Popen, str], transformers_texts: dict[str, list]
) -> None:
    import httpx

    url = serve_model[1]
    assert "startup-lora" in [m["id"] for m in httpx.get(f"{url}/v1/models").json()["data"]]
    request = {"model": "startup-lora", "messages": seed_prompts(1)[0], "temperature": 0, "max_tokens": 32}
    reply = httpx.post(f"{url}/v1/chat/completions", json=request, timeout=60).json()
    assert reply["choices"][0]["message"]["content"].strip() == transformers_texts["lora"][0][0].text


@pytest.mark.vllm
@pytest.mark.slow
def test_a_seeded_round_is_reproducible_and_titles_end_cleanly(server_backend: VllmServerBackend) -> None:
    """All 114 seed ideas x 5 in one call: more prompt tokens than one prefill step takes, which on the CPU
    build killed the engine for seeded requests until chunked prefill was turned off (generation.serve)."""
    prompts = seed_prompts(114)
    sampling = SamplingParams(n=5, temperature=1.0, top_p=1.0, max_new_tokens=48, seed=7)
    started = time.monotonic()
    first = server_backend.generate(prompts, Policy("base", BASE), sampling)
    TIMINGS["round of 114 x 5 candidates s"] = round(time.monotonic() - started, 1)
    assert [len(c) for c in first] == [5] * 114
    # Each prompt's samples have their own random streams: different ideas rarely share a title.
    prompts_of: dict[str, set[int]] = {}
    for index, candidates in enumerate(first):
        for g in candidates:
            prompts_of.setdefault(g.text, set()).add(index)
    shared = sum(len(p) > 1 for p in prompts_of.values())
    assert shared <= 10, f"{shared} titles were written for more than one idea"
    assert first[:8] == server_backend.generate(prompts[:8], Policy("base", BASE), sampling)
    other_seed = SamplingParams(n=5, temperature=1.0, max_new_tokens=48, seed=8)
    assert first[:8] != server_backend.generate(prompts[:8], Policy("base", BASE), other_seed)
    candidates = [g for c in first for g in c]
    assert sum(g.finish_reason == "stop" for g in candidates) >= 0.9 * len(candidates)
    assert all(0 < g.n_tokens <= 48 and g.text for g in candidates)


@pytest.mark.vllm
@pytest.mark.slow
def test_retrained_adapter_in_the_same_directory_is_served_fresh(
    server_backend: VllmServerBackend, base_model: str, tmp_path: Path
) -> None:
    """Same path, new weights: a new version name, so no prefix-cache entry of the old weights is reused."""
    from generation.backends.transformers_backend import TransformersBackend
    from testkit.demo_adapter import save_random_adapter

    prompts = seed_prompts(4)
    policy = Policy("round-2", BASE, str(save_random_adapter(base_model, tmp_path / "r2", seed=2)), 2)
    before = server_backend.generate(prompts, policy, GREEDY)
    save_random_adapter(base_model, tmp_path / "r2", seed=3)
    after = server_backend.generate(prompts, policy, GREEDY)
    assert after != before
    hf = TransformersBackend(dtype="float32")
    assert after == hf.generate(prompts, policy, GREEDY)
    hf.close()


@pytest.mark.vllm
@pytest.mark.slow
def test_unservable_adapter_is_refused_and_server_stays_healthy(
    serve_model: tuple[subprocess.Popen, str],
    server_backend: VllmServerBackend,
    adapters: dict[str, Path],
    transformers_texts: dict[str, list],
) -> None:
    prompts = seed_prompts(12)
    with pytest.raises(PrefloopError, match=r"adapter_config.json: use_dora=true"):
        server_backend.generate(prompts, Policy("dora", BASE, str(adapters["dora"]), 5), GREEDY)
    # Past prefloop's own check, vLLM itself refuses it and says why.
    with pytest.raises(PrefloopError, match="vLLM could not load adapter .*DoRA"):
        server_backend.load_adapter("dora-direct", str(adapters["dora"]))
    # vLLM would accept this one silently and serve wrong text; prefloop compares shapes first.
    with pytest.raises(
        PrefloopError, match=r"does not fit base model .* first: model\.layers\.0\..*: lora_A has shape"
    ):
        server_backend.generate(prompts, Policy("foreign", BASE, str(adapters["foreign"]), 6), GREEDY)
    assert is_healthy(serve_model[1])
    assert server_backend.generate(prompts, Policy("base", BASE), GREEDY) == transformers_texts["base"]


@pytest.mark.vllm
@pytest.mark.slow
def test_inprocess_backend_matches_transformers(
    inprocess_run: tuple[subprocess.Popen, Path, float], transformers_texts: dict
) -> None:
    """The ``vllm`` backend in vLLM's own interpreter: same greedy texts, foreign adapter refused safely."""
    proc, work, started = inprocess_run
    proc.wait(timeout=400)
    stdout, stderr = (work / "stdout").read_text(), (work / "stderr").read_text()
    TIMINGS["in-process engine start + 4 generate calls s (beside the server)"] = round(
        time.monotonic() - started, 1
    )
    assert proc.returncode == 0, stderr[-3000:]
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["base"] == [g[0].text for g in transformers_texts["base"]]
    assert result["adapter"] == [g[0].text for g in transformers_texts["lora"]]
    assert result["foreign_error"] and "does not fit base model" in result["foreign_error"]
    assert result["adapter_after_refusal"] == result["adapter"]


@pytest.mark.vllm
@pytest.mark.slow
def test_sigint_stops_serve_model_cleanly(serve_model: tuple[subprocess.Popen, str]) -> None:
    proc, url = serve_model
    proc.send_signal(signal.SIGINT)
    started = time.monotonic()
    output, _ = proc.communicate(timeout=60)
    TIMINGS["SIGINT to exit s"] = round(time.monotonic() - started, 1)
    assert proc.returncode == 0, output
    assert "vLLM stopped (exit code 0)" in output
    assert not is_healthy(url)
