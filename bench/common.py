"""One row of the benchmark table: a figure, the baseline measured in the same run, and their ratio."""

from __future__ import annotations

import os
import platform
import resource
from dataclasses import asdict, dataclass


@dataclass
class BenchRow:
    area: str  # "generation", "training", "app", "storage", "round", "label-efficiency", ...
    name: str  # what was measured, e.g. "570 candidates, transformers batched"
    value: float
    unit: str  # "s", "candidates/s", "ms p99", "win rate", ...
    baseline_name: str = ""  # e.g. "one prompt at a time", measured in the same run
    baseline: float | None = None
    ratio: float | None = None  # value / baseline (say in note which direction is better)
    note: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def row(
    area: str,
    name: str,
    value: float,
    unit: str,
    baseline_name: str = "",
    baseline: float | None = None,
    note: str = "",
) -> BenchRow:
    ratio = value / baseline if baseline not in (None, 0) else None
    return BenchRow(area, name, value, unit, baseline_name, baseline, ratio, note)


def machine() -> str:
    """E.g. 'Intel Xeon ... , 2 cores, 23.4 GiB, Linux x86_64' (the figures mean nothing without it)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {mem:.1f} GiB, {platform.system()} {platform.machine()}"


def peak_rss_mib(children: bool = False) -> float:
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024
