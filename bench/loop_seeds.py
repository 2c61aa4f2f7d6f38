"""The loop-learns scenarios on several seeds: the README's seeds table (README "Across seeds").

    python -m bench.loop_seeds --seeds 0,1,2 --out bench/results/loop-seeds   # every scenario, 2 at a time
    python -m bench.loop_seeds --seeds 0 --scenario shorter+noise-1round --set train.pref_ftx=0.2 --out DIR
    python -m bench.loop_seeds --table DIR                                    # the markdown table only

Each run (scenario, seed) is ``testkit.loop_learns.play``: the real commands from an empty database (the
import and round 0 made once per seed in ``DIR/round-0``, as the test shares them); its
report.json files, step seconds, CPU seconds and the load average are written to ``DIR/<id>-s<seed>.json``
as soon as it ends, so an interrupted sweep keeps what it finished and a re-run skips it. Not part of
``make bench`` (a sweep is ~9 trainings): run it after a change to the model, the recipe or the locks.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import machine
from testkit.loop_learns import SCENARIOS, Scenario, comparison, operator, play, round_zero

_STARTS_LOCK = threading.Lock()


def start_of(seed: int, settings: tuple[str, ...], out: Path) -> Path:
    """Round 0 of this seed (and settings), made once and copied by every scenario of the seed."""
    folder = out / "round-0" / f"s{seed}-{hashlib.sha256(' '.join(settings).encode()).hexdigest()[:8]}"
    with _STARTS_LOCK:
        if not (folder / "done").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            round_zero(operator(folder, seed, settings))
            (folder / "done").write_text(" ".join(settings) + "\n")
    return folder


def run_one(scenario: Scenario, seed: int, settings: tuple[str, ...], out: Path) -> Path:
    path = out / f"{scenario.id}-s{seed}.json"
    started = datetime.now(UTC)
    load_before = os.getloadavg()
    start = start_of(seed, settings, out)
    with tempfile.TemporaryDirectory(prefix=f"loop-{scenario.id}-s{seed}-") as tmp:
        outcome = play(scenario, Path(tmp), seed, settings, start=start)
    record = {
        "scenario": scenario.id,
        "seed": seed,
        "settings": list(settings),
        "started": started.isoformat(timespec="seconds"),
        "wall_s": round((datetime.now(UTC) - started).total_seconds(), 1),
        "cpu_s": outcome.cpu_seconds,
        "seconds": outcome.seconds,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "machine": machine(),
        "error": outcome.error,
        "reports": outcome.reports,
    }
    path.write_text(json.dumps(record, indent=1) + "\n")
    return path


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:.0%}" if x >= 0.1 or x == 0 else f"{x:.1%}"


def health_cells(report: dict[str, Any], model: str) -> list[str]:
    """Median chars, on topic (ratio to base), in band, ends cleanly, distinct, repeats."""
    health = report["health"]
    h, base = health[model], health["base"]
    on_topic = _pct(h["on_topic_share"])
    if model != "base" and h["on_topic_share"] is not None and base["on_topic_share"]:
        on_topic += f" ({h['on_topic_share'] / base['on_topic_share']:.2f})"
    median = h["median_chars"]
    return [
        "—" if median is None else f"{median:g}",
        on_topic,
        _pct(h["in_band_share"]),
        _pct(h["eot_share"]),
        _pct(h["distinct_share"]),
        _pct(h["repeat_share"]),
    ]


def model_flags(report: dict[str, Any], model: str) -> str:
    mine = [f for f in report["flags"] if f.startswith(f"{model}:")]
    return "; ".join(mine) if mine else "none"


def rows_of(record: dict[str, Any]) -> list[tuple[str, list[str], float | None]]:
    """(label, cells, win rate vs base) per round of one run; the base row comes from round 1's report."""
    name, seed = record["scenario"], record["seed"]
    if record["error"]:
        last = record["error"].strip().splitlines()[-1][:120]
        return [(f"`{name}`", [str(seed), f"failed: {last}", *[""] * 7], None)]
    out = []
    first = record["reports"]["round-1"]
    out.append((f"base ({name})", [str(seed), "—", *health_cells(first, "base"), "—"], None))
    for key, report in record["reports"].items():
        c = comparison(report, key, "base")
        lo, hi = c["ci95"]
        cell = f"{c['win_rate']:.2f} [{lo:.2f}, {hi:.2f}] ({c['n']})"
        if key != "round-1":
            prev = comparison(report, key, f"round-{int(key.split('-')[1]) - 1}")
            cell += f"; vs previous {prev['win_rate']:.2f} [{prev['ci95'][0]:.2f}, {prev['ci95'][1]:.2f}]"
        label = f"`{name}`, {key}"
        out.append(
            (label, [str(seed), cell, *health_cells(report, key), model_flags(report, key)], c["win_rate"])
        )
    return out


HEADER = (
    "| run | seed | win rate vs base [95%] (n) | median chars | on topic (ratio to base) | in 30–75 "
    "| ends cleanly | distinct | repeats | flags |\n|---|---|---|---|---|---|---|---|---|---|"
)


def table(records: list[dict[str, Any]]) -> str:
    """One row per (run, round, seed), then the spread of each round's win rate over the seeds."""
    records = sorted(records, key=lambda r: ([s.id for s in SCENARIOS].index(r["scenario"]), r["seed"]))
    lines, wins = [HEADER], {}
    for record in records:
        for label, cells, win in rows_of(record):
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
            if win is not None:
                wins.setdefault(label, []).append(win)
    lines.append("")
    lines.append("| run | seeds | win rate: min, median, max | spread (max − min) |")
    lines.append("|---|---|---|---|")
    for label, values in wins.items():
        lines.append(
            f"| {label} | {len(values)} | {min(values):.2f}, {statistics.median(values):.2f}, "
            f"{max(values):.2f} | {max(values) - min(values):.2f} |"
        )
    return "\n".join(lines)


def load(out: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("*-s*.json"))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loop_seeds", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--scenario", action="append", help="a scenario id (default: every scenario)")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="KEY=VALUE on every command")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (each uses one torch thread)")
    parser.add_argument("--out", type=Path, help="folder for one JSON file per run")
    parser.add_argument("--table", type=Path, metavar="DIR", help="print the table of DIR's runs and exit")
    args = parser.parse_args(argv)
    if args.table:
        print(table(load(args.table)))
        return 0
    if args.out is None:
        parser.error("--out DIR is required for a sweep")
    known = {s.id: s for s in SCENARIOS}
    unknown = [name for name in args.scenario or [] if name not in known]
    if unknown:
        parser.error(f"--scenario {', '.join(unknown)}: unknown; use one of {', '.join(known)}")
    scenarios = [known[name] for name in args.scenario] if args.scenario else SCENARIOS
    seeds = [int(s) for s in args.seeds.split(",")]
    settings = tuple(flag for item in args.sets for flag in ("--set", item))
    args.out.mkdir(parents=True, exist_ok=True)
    # longest first (two rounds), so the workers finish together
    todo = [
        (s, seed)
        for s in sorted(scenarios, key=lambda s: -s.rounds)
        for seed in seeds
        if not (args.out / f"{s.id}-s{seed}.json").exists()
    ]
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        for path in pool.map(lambda job: run_one(*job, settings, args.out), todo):
            record = json.loads(path.read_text())
            print(
                f"{path.name}: {record['wall_s']:.0f} s wall, {record['cpu_s']:.0f} CPU-s, load "
                f"{record['loadavg_before'][0]:.1f} -> {record['loadavg_after'][0]:.1f}",
                flush=True,
            )
    print(table(load(args.out)))
    return 0 if all(not r["error"] for r in load(args.out)) else 1


if __name__ == "__main__":
    raise SystemExit(main())
