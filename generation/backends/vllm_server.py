"""The ``vllm-server`` backend: generation over HTTP from an OpenAI-compatible vLLM server.

This is how a deployment keeps vLLM's pins (its own torch/transformers) apart from TRL's: the server
runs from its own environment (``prefloop serve-model``, or one this backend starts when
``generation.vllm_url`` is unset) and each new adapter version is loaded into it at runtime.

Two vLLM behaviours shape this module (see README "vLLM"):
- an adapter is loaded under a name derived from its files' contents, so a retrained adapter written
  to the same directory gets a new name: vLLM keys its prefix cache on (name, path), and reloading a
  name in place would reuse cache entries computed with the old weights;
- the CPU build applies an adapter to base requests that share a batch with adapter requests, so one
  ``generate`` call serves one policy and calls never overlap (a lock serialises them).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from core.errors import PrefloopError
from generation.backends.base import Generated, Messages, Policy, SamplingParams
from generation.backends.vllm_seeds import request_seed
from models.adapters import check_max_lora_rank, validate_servable_adapter

if TYPE_CHECKING:
    from core.config import Config
    from generation.serve import ServerSpec, VllmServer

REQUEST_TIMEOUT_S = 600.0
IN_FLIGHT = 32  # concurrent requests: enough for vLLM to batch them, few enough to keep memory flat


def adapter_version_name(policy: Policy) -> str:
    """``<policy name>-<12 hex of the adapter files' sha256>``: a new name whenever the weights change."""
    digest = hashlib.sha256()
    directory = Path(policy.adapter_path or "")
    for file in sorted(directory.glob("adapter_*")):  # adapter_config.json, adapter_model.safetensors
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return f"{policy.name}-{digest.hexdigest()[:12]}"


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500]
    error = body.get("error", body) if isinstance(body, dict) else body
    message = error.get("message") if isinstance(error, dict) else None
    return str(message or body)[:500]


class VllmServerBackend:
    """Generates through a vLLM server at ``url``, or through one it starts itself (``start_server``)."""

    name = "vllm-server"

    def __init__(
        self,
        url: str | None = None,
        max_lora_rank: int = 16,
        start_server: Callable[[str], VllmServer] | None = None,
        resolve_model: Callable[[str], str] | None = None,
        in_flight: int = IN_FLIGHT,
    ) -> None:
        """``start_server(base_model) -> VllmServer`` is called when ``url`` is None (or the base changes);
        ``resolve_model(name) -> local path`` tells whether a server's model is the policy's base."""
        self.url = url.rstrip("/") if url else None
        self.max_lora_rank = max_lora_rank
        self._start_server = start_server
        self._resolve_model = resolve_model
        self.in_flight = in_flight
        self._server: VllmServer | None = None
        self._served_for: str | None = None  # the policy base the current server was checked against
        self._model_id: str | None = None
        self._client = httpx.Client(timeout=REQUEST_TIMEOUT_S)
        self._lock = threading.Lock()

    # -- server and models -------------------------------------------------------------------------
    def _models(self) -> list[dict[str, Any]]:
        return self._request("GET", "/v1/models")["data"]

    def _request(self, method: str, path: str, payload: dict | None = None) -> Any:
        try:
            response = self._client.request(method, f"{self.url}{path}", json=payload)
        except httpx.TransportError as exc:
            raise PrefloopError(
                f"no vLLM server answers at {self.url} ({exc}); start one with `prefloop serve-model`, "
                "or unset generation.vllm_url to let generation start its own"
            ) from exc
        if response.status_code != 200:
            raise PrefloopError(
                f"vLLM server {self.url}{path}: HTTP {response.status_code}: {_error_message(response)}"
            )
        return (
            response.json()
            if response.headers.get("content-type", "").startswith("application/json")
            else None
        )

    def _ensure_server(self, base_model: str) -> str:
        """The served model id for ``base_model``, starting (or restarting) an owned server if needed."""
        if self._served_for == base_model and self._model_id:
            return self._model_id
        if self._start_server is not None and (self.url is None or self._server is not None):
            if self._server is not None:
                self._server.stop()
            self._server = self._start_server(base_model)
            self.url = self._server.url
        bases = [m for m in self._models() if not m.get("parent")]
        wanted = {base_model}
        if self._resolve_model is not None:
            wanted.add(str(self._resolve_model(base_model)))
        match = next((m for m in bases if m["id"] in wanted or m.get("root") in wanted), None)
        if match is None:
            served = ", ".join(m.get("root") or m["id"] for m in bases) or "nothing"
            raise PrefloopError(
                f"the vLLM server at {self.url} serves {served}, not the policy's base model {base_model!r}; "
                f"start one for it with `prefloop serve-model --model {base_model}`"
            )
        self._served_for, self._model_id = base_model, match["id"]
        return match["id"]

    def load_adapter(self, name: str, path: str) -> None:
        """POST /v1/load_lora_adapter; PrefloopError with vLLM's reason if it refuses (it stays up)."""
        try:
            self._request("POST", "/v1/load_lora_adapter", {"lora_name": name, "lora_path": path})
        except PrefloopError as exc:
            raise PrefloopError(f"vLLM could not load adapter {path} as {name!r}: {exc}") from exc

    def _model_for(self, policy: Policy) -> str:
        """The model id to request for ``policy``: the base id, or its adapter loaded under a version name."""
        base_id = self._ensure_server(policy.base_model)
        if not policy.adapter_path:
            return base_id
        path = str(Path(policy.adapter_path).expanduser().resolve())
        base_dir = self._resolve_model(policy.base_model) if self._resolve_model is not None else None
        validate_servable_adapter(path, self.max_lora_rank, base_dir)
        name = adapter_version_name(policy)
        if not any(m["id"] == name for m in self._models()):
            self.load_adapter(name, path)
        return name

    # -- generation --------------------------------------------------------------------------------
    def _complete(
        self, model: str, messages: Messages, sampling: SamplingParams, seed: int
    ) -> list[Generated]:
        body = self._request(
            "POST",
            "/v1/chat/completions",
            {
                "model": model,
                "messages": messages,
                "n": sampling.n,
                "temperature": sampling.temperature,
                "top_p": sampling.top_p,
                "max_tokens": sampling.max_new_tokens,
                "seed": seed,
                "stop": list(sampling.stop),
                "return_token_ids": True,  # vLLM extension: exact per-candidate token counts
            },
        )
        choices = sorted(body["choices"], key=lambda c: c["index"])
        per_choice = body.get("usage", {}).get("completion_tokens", 0) // max(1, len(choices))
        return [
            Generated(
                text=(c["message"].get("content") or "").strip(),
                finish_reason="length" if c.get("finish_reason") == "length" else "stop",
                n_tokens=len(c["token_ids"]) if c.get("token_ids") is not None else per_choice,
            )
            for c in choices
        ]

    def generate(
        self, prompts: list[Messages], policy: Policy, sampling: SamplingParams
    ) -> list[list[Generated]]:
        """Prompt ``i`` is sampled with ``request_seed(sampling.seed, i)``: same call, same texts."""
        with self._lock:
            model = self._model_for(policy)
            with ThreadPoolExecutor(max_workers=self.in_flight) as pool:
                futures = [
                    pool.submit(self._complete, model, messages, sampling, request_seed(sampling.seed, i))
                    for i, messages in enumerate(prompts)
                ]
                try:
                    return [f.result() for f in futures]
                except BaseException:
                    for future in futures:  # one failed: don't wait for the rest of the round
                        future.cancel()
                    raise

    def close(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
        self._client.close()


def make_backend(config: Config) -> VllmServerBackend:
    """Use ``generation.vllm_url`` if set, else start a server from ``generation.vllm_python`` on demand."""
    from core.net import free_port
    from generation.serve import ServerSpec, resolve_python, start_server
    from models.loading import resolve_model

    gen = config.generation
    rank = check_max_lora_rank(gen.vllm_max_lora_rank)
    if gen.vllm_url:
        return VllmServerBackend(gen.vllm_url, rank, resolve_model=resolve_model)
    python = resolve_python(gen.vllm_python)

    def start(base_model: str) -> VllmServer:
        from rich.console import Console

        spec: ServerSpec = ServerSpec(
            model=resolve_model(base_model),
            served_name=base_model,
            python=python,
            port=free_port(),
            max_lora_rank=rank,
            dtype=config.model.dtype,
        )
        return start_server(spec, config.var_dir / "vllm" / f"server-{spec.port}.log", Console(stderr=True))

    return VllmServerBackend(None, rank, start_server=start, resolve_model=resolve_model)
