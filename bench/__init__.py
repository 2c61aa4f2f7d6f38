"""Benchmarks: each ``bench/bench_<area>.py`` exposes ``run(quick: bool) -> list[BenchRow]``."""
