"""The `make bench` machinery: find bench modules, run each in its own process, tabulate, save.

Each module runs in a child interpreter so one module's crash, hang or memory peak (``peak_rss_mib``)
cannot spoil another's figures; a module that fails becomes an error row, never a crashed run.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, replace
from datetime import UTC, datetime
from importlib.util import module_from_spec, spec_from_file_location
from pathlib import Path
from types import ModuleType

from bench.common import BenchRow

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
README = BENCH_DIR / "README.md"
TABLE_START, TABLE_END = "<!-- bench:table -->", "<!-- /bench:table -->"
COLUMNS = ("area", "what", "value", "unit", "baseline", "ratio", "note")


def area_of(module: str) -> str:
    """``bench_label_efficiency`` -> ``label-efficiency`` (the name ``--only`` takes)."""
    return module.replace("_", "-").removeprefix("bench-")


def discover(bench_dir: Path = BENCH_DIR) -> list[Path]:
    """The ``bench_*.py`` files in ``bench_dir``, sorted."""
    return sorted(bench_dir.glob("bench_*.py"))


def select(modules: list[Path], only: str | None) -> list[Path]:
    """The modules named in ``--only a,b`` (area or module names); unknown names are an error."""
    if not only:
        return modules
    wanted = {area_of(name.strip()) for name in only.split(",") if name.strip()}
    known = {area_of(m.stem): m for m in modules}
    unknown = sorted(wanted - known.keys())
    if unknown:
        raise SystemExit(
            f"--only: no bench module for {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return [known[a] for a in sorted(wanted)]


def error_row(module: Path, what: str, detail: str) -> BenchRow:
    return BenchRow(area_of(module.stem), f"ERROR: {what}", math.nan, "", note=detail[:300])


def _import_file(path: Path) -> ModuleType:
    spec = spec_from_file_location(f"bench.{path.stem}", path)
    module = module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses (and pickling) look their module up there
    spec.loader.exec_module(module)
    return module


def run_in_child(module: Path, quick: bool, rows_out: Path) -> None:
    """Child side: import the module, run it, write its rows (or the error) as JSON to ``rows_out``."""
    try:
        rows = _import_file(module).run(quick=quick)
        payload = {"rows": [asdict(r) for r in rows]}
    except BaseException as exc:  # the parent turns any failure into an error row
        traceback.print_exc()
        payload = {"error": f"{type(exc).__name__}: {exc}"}
    rows_out.write_text(json.dumps(payload, default=str), encoding="utf-8")


def with_load(rows: list[BenchRow], before: float, after: float, cores: int | None) -> list[BenchRow]:
    """Each row's note ends with the load average around its module: on a small shared machine other jobs
    move every figure, so a reader must see how busy the machine was."""
    busy = f"load average {before:.1f} before / {after:.1f} after on {cores} cores"
    return [replace(r, note=f"{r.note}; {busy}" if r.note else busy) for r in rows]


def run_isolated(module: Path, quick: bool, timeout: float | None) -> tuple[list[BenchRow], float]:
    """Run one module in a child interpreter; return its rows (or one error row) and its wall seconds."""
    with tempfile.TemporaryDirectory(prefix="prefloop-bench-") as tmp:
        rows_out = Path(tmp) / "rows.json"
        cmd = [sys.executable, "-m", "bench", "--child", str(module), "--rows-out", str(rows_out)]
        cmd += ["--quick"] if quick else []
        started = time.perf_counter()
        try:
            proc = subprocess.run(cmd, timeout=timeout, cwd=REPO_ROOT, env=os.environ.copy())
        except subprocess.TimeoutExpired:
            return [
                error_row(module, "timed out", f"killed after {timeout:.0f} s")
            ], time.perf_counter() - started
        seconds = time.perf_counter() - started
        if not rows_out.exists():
            return [error_row(module, "crashed", f"child exited with code {proc.returncode}")], seconds
        payload = json.loads(rows_out.read_text(encoding="utf-8"))
    if "error" in payload:
        return [error_row(module, "raised", payload["error"])], seconds
    rows = [BenchRow(**r) for r in payload["rows"]]
    return rows or [error_row(module, "no rows", "run() returned an empty list")], seconds


def fmt(value: float | None) -> str:
    """Whole numbers as such, others to three significant figures; blank for missing, "—" for NaN."""
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return "—"
    if float(value).is_integer() or abs(value) >= 1000:
        return f"{value:,.0f}"
    digits = max(0, 2 - math.floor(math.log10(abs(value))))
    return f"{value:.{digits}f}"


def markdown_table(rows: list[BenchRow]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        baseline = f"{fmt(r.baseline)} ({r.baseline_name})" if r.baseline is not None else r.baseline_name
        ratio = f"{fmt(r.ratio)}×" if r.ratio is not None else ""
        cells = (r.area, r.name, fmt(r.value), r.unit, baseline, ratio, r.note)
        lines.append("| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    return "\n".join(lines)


def _json_safe(value):
    return None if isinstance(value, float) and (math.isnan(value) or math.isinf(value)) else value


def results_name(day: str, host: str, only: str | None, quick: bool) -> str:
    """``<date>-<host>.json`` for a full run; a subset or quick run gets a suffix, never overwriting it."""
    suffix = "".join(["-" + only.replace(",", "+") if only else "", "-quick" if quick else ""])
    return f"{day}-{host}{suffix}.json"


def write_results(rows: list[BenchRow], meta: dict, results_dir: Path = RESULTS_DIR) -> Path:
    """``results/<name>`` (``results_name``) written atomically (temp file, then rename)."""
    now = datetime.now(UTC)
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / results_name(
        f"{now:%Y-%m-%d}", socket.gethostname(), meta.get("only"), meta.get("quick", False)
    )
    doc = {
        **meta,
        "finished_at": now.isoformat(timespec="seconds"),
        "rows": [{k: _json_safe(v) for k, v in asdict(r).items()} for r in rows],
    }
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def update_readme(table: str, header: str, readme: Path = README) -> None:
    """Replace the table between the bench:table markers (appending the markers if missing)."""
    block = f"{TABLE_START}\n{header}\n\n{table}\n{TABLE_END}"
    text = readme.read_text(encoding="utf-8") if readme.exists() else "# Benchmarks\n"
    if TABLE_START in text and TABLE_END in text:
        before, rest = text.split(TABLE_START, 1)
        after = rest.split(TABLE_END, 1)[1]
        text = before + block + after
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    tmp = readme.with_suffix(".md.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, readme)
