"""`python -m bench` (= `make bench`): run every bench/bench_*.py, print one markdown table, save JSON.

python -m bench                          # everything; updates bench/README.md
python -m bench --quick                  # small variants of every benchmark (minutes)
python -m bench --only storage,training  # a subset
make bench BENCH_ARGS="--quick --only label-efficiency"
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from pathlib import Path

from bench.common import machine
from bench.runner import (
    BENCH_DIR,
    README,
    RESULTS_DIR,
    area_of,
    discover,
    markdown_table,
    run_in_child,
    run_isolated,
    select,
    update_readme,
    with_load,
    write_results,
)


def _git_commit() -> str:
    """The short HEAD commit, with "+changes" when the working tree differs from it ("" outside git)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
        )
        return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return ""


def main(
    argv: list[str] | None = None,
    bench_dir: Path = BENCH_DIR,
    results_dir: Path = RESULTS_DIR,
    readme: Path = README,
) -> int:
    """The runner; the directories are parameters so tests can run it on their own bench modules."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated areas, e.g. storage,label-efficiency (see --list)")
    parser.add_argument(
        "--quick", action="store_true", help="small, fast variants (smoke check, not figures)"
    )
    parser.add_argument("--list", action="store_true", help="list the areas and exit")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per module before it is killed")
    parser.add_argument(
        "--readme",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="update bench/README.md (default: only for a full, non-quick run)",
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when any module fails (default: error row)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--rows-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        run_in_child(Path(args.child), args.quick, args.rows_out)
        return 0
    modules = select(discover(bench_dir), args.only)
    if args.list:
        print("\n".join(area_of(m.stem) for m in modules))
        return 0

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    commit = _git_commit()  # the code the run starts with: later commits must not relabel its figures
    started = time.perf_counter()
    rows, seconds = [], {}
    for i, module in enumerate(modules, 1):
        area = area_of(module.stem)
        print(f"[{i}/{len(modules)}] {area} ...", flush=True)
        load_before = os.getloadavg()[0]
        module_rows, seconds[area] = run_isolated(module, args.quick, args.timeout)
        rows += with_load(module_rows, load_before, os.getloadavg()[0], os.cpu_count())
    table = markdown_table(rows)
    host = machine()
    header = f"Machine: {host}. Commit {commit or '?'}{', --quick' if args.quick else ''}."
    print(f"\n{table}\n\n{header}")
    meta = {
        "machine": host,
        "commit": commit,
        "quick": args.quick,
        "only": args.only,
        "seconds_per_area": {a: round(s, 1) for a, s in seconds.items()},
    }
    path = write_results(rows, meta, results_dir)
    print(f"results: {path}")
    if args.readme if args.readme is not None else not (args.quick or args.only):
        update_readme(table, header, readme)
        print(f"{readme} updated")
    failed = sorted({r.area for r in rows if r.name.startswith("ERROR")})
    print(
        f"bench finished in {time.perf_counter() - started:.0f} s"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed and args.strict else 0


if __name__ == "__main__":
    raise SystemExit(main())
