"""Label efficiency: win rate vs base against the number of train labels, per pair selection and schedule.

Every arm is the loop an operator runs (on the tiny model, or ``--base smollm2-135m``, the default base),
through the library calls the commands make (one process per arm at a time, one torch thread): import
the seed's ideas (`prompts import`), round 0 (`generate --labels L`: pairs ranked by
``labelling.pair_selection``, the first L queued), then per round
the oracle labels exactly the L queued pairs (`simulate --purpose train`, with ``noise`` of its decisive
answers flipped), `train-round --labels L` (train on every train label so far, then queue the new
adapter's first L pairs: fresh on-policy candidates), the noiseless oracle judges the round's blind eval
pairs (`simulate --purpose eval`) and `report` reads the win rate vs base (ties ½, Wilson 95% over the
eval pairs: about 136 on the 9 held-out ideas, 10 titles per model per idea) and the health flags.
Schedules at equal total labels: 1 round of 300, and 3 rounds of 100 (whose rounds also give the 100- and
200-label points).

``python -m bench.bench_label_efficiency --out FILE`` runs the sweep two arms at a time, appending each
finished arm to FILE (JSON lines) and skipping arms already there; ``--table FILE`` prints the README
tables and draws the plots. ``--rules``/``--noise`` run part of the plan; ``--set KEY=VALUE`` runs it as an
ablation (its own arms, its own table beside the defaults). ``make bench`` runs the tiny plan through
``run``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from bench.common import BenchRow, row
from core.config import DEFAULT_BASE, TINY_MODEL
from core.paths import REPO_ROOT

AREA = "label-efficiency"
SEED_LABELS, TARGET = 1140, 0.68
IDEAS = REPO_ROOT / "data" / "youtube-titles" / "ideas.csv"
UNSEEN = "bench/unseen_rules.py:no_colon"  # through the FILE.py:FUNC path, as a user's own rule
RULES = {"shorter": "length", "keywords": "content words", "number": "format", UNSEEN: "style"}
STRATEGIES = ("random", "most-different", "uncertain")
WORKERS = 2  # processes; every step runs on one torch thread: two arms use the two cores


@dataclass(frozen=True)
class Arm:
    oracle: str
    strategy: str
    noise: float
    rounds: int
    labels_per_round: int
    seed: int = 0
    base: str = TINY_MODEL
    sets: tuple[str, ...] = ()  # an ablation: `--set` overrides beyond the defaults

    @property
    def id(self) -> str:
        return "|".join(
            ([] if self.base == TINY_MODEL else [self.base])
            + [rule_name(self.oracle), self.strategy, f"noise{self.noise:g}"]
            + [f"{self.rounds}x{self.labels_per_round}", f"seed{self.seed}", *self.sets]
        )


@dataclass
class RoundResult:
    labels: int  # train labels given so far (all rounds)
    decisive: int  # of them, not ties
    win_rate: float
    ci95: tuple[float, float]
    n: int  # eval judgments (the report's intervals are over its items: held-out prompts)
    flags: list[str]  # the health flags of this round's model
    selection_seconds: float | None  # scoring + ranking the round's new pairs (train-round's stage 4)
    # the health gate's (published step, last step); None: not recorded (arms before the gate)
    chosen_step: tuple[int, int] | None = None


@dataclass
class ArmResult:
    arm: Arm
    rounds: list[RoundResult] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None


def rule_name(oracle: str) -> str:
    return oracle.rpartition(":")[2].replace("_", "-")


def plan(quick: bool, base: str = TINY_MODEL) -> list[Arm]:
    """The arms, most informative first, so a sweep cut short still answers the main questions: `shorter`
    under every strategy, then the default strategy on every rule, schedule and noise, then the rest.

    On the default base, which trains ~30x slower, the default strategy on every rule and noise, then
    `shorter` under the other strategies and in one round."""
    if base != TINY_MODEL:
        rules = ("shorter", "number", UNSEEN, "keywords")
        arms = [Arm(o, "most-different", noise, 3, 100, base=base) for noise in (0.0, 0.2) for o in rules]
        arms += [Arm("shorter", s, 0.0, 3, 100, base=base) for s in ("random", "uncertain")]
        return arms + [Arm("shorter", "most-different", 0.0, 1, 300, base=base)]
    if quick:
        return [Arm("shorter", s, 0.0, 3, 100) for s in ("random", "most-different")]
    # `keywords` last: it was not learnable at 300 labels before
    rules = ("shorter", "number", UNSEEN, "keywords")
    default = "most-different"
    arms = [Arm("shorter", s, 0.0, 3, 100) for s in STRATEGIES]
    arms += [Arm("number", default, 0.0, 3, 100), Arm("shorter", default, 0.0, 1, 300)]
    arms += [Arm("shorter", default, 0.2, 3, 100), Arm(UNSEEN, default, 0.0, 3, 100)]
    arms += [Arm(o, default, noise, 3, 100) for noise in (0.0, 0.2) for o in rules]
    arms += [Arm(o, s, noise, 3, 100) for noise in (0.0, 0.2) for o in rules for s in STRATEGIES]
    # one round from round 0: `uncertain` has no adapter to ask, so it equals `most-different` there
    arms += [Arm(o, s, 0.0, 1, 300) for o in rules for s in ("random", "most-different")]
    return list(dict.fromkeys(arms))


# -- one arm: the operator's steps, through the library calls the commands make ------------------------


def arm_config(arm: Arm, db: str):
    from core.config import load_config

    return load_config(
        overrides=[
            f"model.base={arm.base}",
            f"labelling.pair_selection={arm.strategy}",
            f"labelling.labels_per_round={arm.labels_per_round}",
            f"generation.seed={arm.seed}",
            f"train.seed={arm.seed}",
            "report.bootstrap_rounds=100",  # the win rate's interval is Wilson's; the bootstrap is for ranks
            *arm.sets,
        ],
        db=db,
    )


def play(arm: Arm, workdir: Path) -> ArmResult:
    """Run ``arm`` in ``workdir`` (its own database and work folder): what `prefloop prompts import`,
    `generate`, `simulate`, `train-round` and `report` call, in one process (a command's start-up, about
    6 CPU-seconds of imports, is paid once per worker instead of 14 times per arm)."""
    import random

    from evaluation.report import build_report
    from generation.api import generate_candidates
    from labelling.oracles import load_oracle, with_noise
    from labelling.selection import rank_pairs
    from labelling.simulate import default_annotator_name, simulate
    from loop.round import train_round
    from storage.db import make_engine, migrate
    from storage.imports import import_prompts
    from storage.models import Purpose

    result, started = ArmResult(arm), time.perf_counter()
    config = arm_config(arm, f"sqlite:///{workdir / 'prefloop.db'}")
    engine = make_engine(config.db)
    oracle = load_oracle(arm.oracle)
    labeller = with_noise(oracle, arm.noise, random.Random(arm.seed))
    labeller_name = default_annotator_name(arm.oracle, arm.noise)
    labels = decisive = 0
    try:
        migrate(engine)
        import_prompts(
            engine, IDEAS, column="Idea", template="youtube-title", eval_share=config.data.eval_share
        )
        generate_candidates(engine, config, round_id=0, n=5, progress=False, pairs=rank_pairs)
        for number in range(1, arm.rounds + 1):
            given = simulate(
                engine,
                labeller,
                arm.oracle,
                annotator=labeller_name,
                settings=config.annotate,
                purpose=Purpose.train,
            )
            labels += given.judged
            decisive += given.choices["a"] + given.choices["b"]
            summary = train_round(engine, config, echo=lambda _: None)
            simulate(
                engine, oracle, arm.oracle, annotator="judge", settings=config.annotate, purpose=Purpose.eval
            )
            data = build_report(engine, config.report).data
            vs_base = next(
                c
                for c in data.groups["simulated"].comparisons
                if (c.model, c.baseline) == (f"round-{number}", "base")
            )
            result.rounds.append(
                RoundResult(
                    labels,
                    decisive,
                    vs_base.win_rate,
                    tuple(vs_base.ci95),
                    vs_base.n,
                    [f for f in data.flags if f.startswith(f"round-{number}:")],  # this round's own
                    summary.selection[1] if summary.selection else None,
                    summary.chosen_step,
                )
            )
    except Exception as exc:  # an arm that fails is recorded as such; the sweep goes on
        result.error = f"{type(exc).__name__}: {exc}"[-1500:]
    finally:
        engine.dispose()
    result.seconds = time.perf_counter() - started
    return result


def _play_in_tmp(arm: Arm) -> ArmResult:
    with tempfile.TemporaryDirectory(prefix="prefloop-label-eff-") as tmp:
        return play(arm, Path(tmp))


def _one_thread() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"  # numpy/scipy in the report too: one core per worker
    os.environ["HF_HUB_OFFLINE"] = "1"


# -- the sweep and its reading --------------------------------------------------------------------------


def _pair(value: list[int] | None) -> tuple[int, int] | None:
    return (value[0], value[1]) if value else None


def read_results(path: Path) -> list[ArmResult]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        raw = json.loads(line)
        rounds = [
            RoundResult(**{**r, "ci95": tuple(r["ci95"]), "chosen_step": _pair(r.get("chosen_step"))})
            for r in raw["rounds"]
        ]
        arm = Arm(**{**raw["arm"], "sets": tuple(raw["arm"].get("sets", ()))})
        out.append(ArmResult(arm, rounds, raw["seconds"], raw["error"]))
    return out


def sweep(arms: Sequence[Arm], out: Path, workers: int = WORKERS) -> list[ArmResult]:
    """Play the arms not yet in ``out``, ``workers`` at a time, appending each as it finishes."""
    done = {r.arm.id for r in read_results(out) if r.error is None}
    todo = [a for a in arms if a.id not in done]

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_one_thread) as pool:
        for future in as_completed([pool.submit(_play_in_tmp, arm) for arm in todo]):
            result = future.result()
            with out.open("a") as f:
                f.write(json.dumps(asdict(result)) + "\n")
            last = result.rounds[-1] if result.rounds else None
            print(
                f"{AREA}: {result.arm.id}: "
                + (f"{last.win_rate:.3f} {last.ci95} n={last.n} " if last else "")
                + f"{result.seconds:.0f}s load {os.getloadavg()[0]:.1f}"
                + (f" ERROR {result.error[:300]}" if result.error else ""),
                flush=True,
            )
    return [r for r in read_results(out) if r.arm in set(arms)]


def arms_of(
    results: Sequence[ArmResult],
    oracle: str,
    strategy: str,
    noise: float,
    base: str = TINY_MODEL,
    seed: int = 0,
) -> list[ArmResult]:
    """The arms of this rule, strategy, noise, base and seed at the defaults (no ablation ``sets``)."""
    key = (oracle, strategy, noise, base, seed, ())
    return [
        r
        for r in results
        if (r.arm.oracle, r.arm.strategy, r.arm.noise, r.arm.base, r.arm.seed, r.arm.sets) == key
    ]


def meets_bar(point: RoundResult) -> bool:
    """The issue's bar: win rate ≥ 0.68 with the Wilson lower bound above 0.5 and no health flag."""
    return point.win_rate >= TARGET and point.ci95[0] > 0.5 and not point.flags


def curve(results: Sequence[ArmResult]) -> list[RoundResult]:
    """Every measured point of these arms, by labels (a 3×100 arm gives 100, 200, 300)."""
    return sorted((p for r in results if r.error is None for p in r.rounds), key=lambda p: p.labels)


def labels_to_target(points: Sequence[RoundResult]) -> int | None:
    """The fewest labels at which a point meets the bar (None if none does)."""
    return next((p.labels for p in sorted(points, key=lambda p: p.labels) if meets_bar(p)), None)


def _cell(point: RoundResult | None) -> str:
    if point is None:
        return "—"
    lo, hi = point.ci95
    text = f"{point.win_rate:.2f} [{lo:.2f}, {hi:.2f}]" + (" ⚑" if point.flags else "")
    text = f"**{text}**" if meets_bar(point) else text
    if point.chosen_step and point.chosen_step[0] != point.chosen_step[1]:
        text += " @{}/{}".format(*point.chosen_step)  # the health gate published an earlier step
    return text


def _round_cells(rounds: Sequence[RoundResult]) -> list[str]:
    """The cells of rounds 1-3 (100, 200, 300 labels), "—" for a round not played."""
    return [_cell(rounds[i] if i < len(rounds) else None) for i in range(3)]


def _needed(points: Sequence[RoundResult]) -> str:
    needed = labels_to_target(points)
    return "not within 300" if needed is None else str(needed)


def markdown_table(results: Sequence[ArmResult], noise: float, base: str = TINY_MODEL) -> str:
    """Per rule and strategy: win rate after 100/200/300 labels over 3 rounds, 300 in one round, and the
    fewest labels meeting the bar."""
    lines = [
        "| rule | selection | 100 (round 1) | 200 (round 2) | 300 (round 3) | 300 in 1 round "
        "| labels to 68% |",
        "|---|---|---|---|---|---|---|",
    ]
    for oracle, kind in RULES.items():
        for strategy in STRATEGIES:
            mine = arms_of(results, oracle, strategy, noise, base)
            if not mine:
                continue
            staged = next((r for r in mine if r.arm.rounds == 3 and r.error is None), None)
            single = next((r for r in mine if r.arm.rounds == 1 and r.error is None), None)
            cells = _round_cells(staged.rounds if staged else [])
            cells.append(_cell(single.rounds[0] if single and single.rounds else None))
            lines.append(
                f"| `{rule_name(oracle)}` ({kind}) | {strategy} | "
                + " | ".join(cells)
                + f" | {_needed(curve(mine))} |"
            )
    return "\n".join(lines)


def ablation_table(results: Sequence[ArmResult], base: str = TINY_MODEL) -> str:
    """Arms run with ``sets`` beside the same arm (rule, selection, noise, seed) at the defaults: win rate
    after each round."""
    tried = [r for r in results if r.arm.base == base and r.arm.sets and r.error is None]
    if not tried:
        return ""
    lines = [
        "| rule | selection | noise | seed | settings | 100 | 200 | 300 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    keys = dict.fromkeys((r.arm.oracle, r.arm.strategy, r.arm.noise, r.arm.seed) for r in tried)
    for oracle, strategy, noise, seed in keys:
        default = [r for r in arms_of(results, oracle, strategy, noise, base, seed) if r.arm.rounds == 3]
        mine = [r for r in tried if (r.arm.oracle, r.arm.strategy, r.arm.noise, r.arm.seed, r.arm.rounds) == (
            oracle, strategy, noise, seed, 3)]  # fmt: skip
        for r in default[:1] + sorted(mine, key=lambda r: r.arm.sets):
            cells = _round_cells(r.rounds)
            what = ", ".join(f"`{s}`" for s in r.arm.sets) or "defaults"
            lines.append(
                f"| `{rule_name(oracle)}` | {strategy} | {noise:.0%} | {seed} | {what} | "
                + " | ".join(cells)
                + " |"
            )
    return "\n".join(lines)


def seeds_table(results: Sequence[ArmResult], base: str = TINY_MODEL) -> str:
    """The default selection's 3 rounds of 100 per seed, for each rule and noise run at more than one."""
    seeds = sorted({r.arm.seed for r in results if r.arm.base == base})
    lines = ["| rule | noise | seed | 100 | 200 | 300 | labels to 68% |", "|---|---|---|---|---|---|---|"]
    for noise in sorted({r.arm.noise for r in results if r.arm.base == base}):
        for oracle in RULES:
            group = [
                r
                for seed in seeds
                for r in arms_of(results, oracle, "most-different", noise, base, seed)
                if r.arm.rounds == 3 and r.error is None
            ]
            for r in group if len(group) > 1 else []:
                lines.append(
                    f"| `{rule_name(oracle)}` | {noise:.0%} | {r.arm.seed} | "
                    + " | ".join(_round_cells(r.rounds))
                    + f" | {_needed(r.rounds)} |"
                )
    return "\n".join(lines) if len(lines) > 2 else ""


def plot(results: Sequence[ArmResult], path: Path, noise: float, base: str = TINY_MODEL) -> Path:
    """One panel per rule: labels on x, win rate vs base with its Wilson 95% interval on y, one line per
    strategy (3 rounds of 100), the 1-round-of-300 point offset beside 300."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(RULES), figsize=(4 * len(RULES), 3.6), sharey=True)
    for ax, oracle in zip(axes, RULES, strict=True):
        for k, strategy in enumerate(STRATEGIES):
            mine = arms_of(results, oracle, strategy, noise, base)
            for r in mine:
                if r.error or not r.rounds:
                    continue
                xs = [p.labels + (k - 1) * 6 + (12 if r.arm.rounds == 1 else 0) for p in r.rounds]
                ys = [p.win_rate for p in r.rounds]
                err = [[p.win_rate - p.ci95[0] for p in r.rounds], [p.ci95[1] - p.win_rate for p in r.rounds]]
                style = {"marker": "o", "linestyle": "-"} if r.arm.rounds > 1 else {"marker": "s", "ls": ""}
                label = strategy if r.arm.rounds > 1 else f"{strategy}, 1 round"
                ax.errorbar(xs, ys, yerr=err, capsize=3, color=f"C{k}", label=label, **style)
                flagged = [(x, p.win_rate) for x, p in zip(xs, r.rounds, strict=True) if p.flags]
                if flagged:
                    ax.scatter(*zip(*flagged, strict=True), s=90, marker="x", color="red", zorder=3,
                               label="health flag (⚑)")  # fmt: skip
        ax.axhline(TARGET, color="grey", linestyle="--", linewidth=1)
        ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)
        ax.set_title(f"{rule_name(oracle)} ({RULES[oracle]})")
        ax.set_xlabel("train labels")
        ax.set_xticks([100, 200, 300])
        ax.set_xlim(60, 340)
        if not ax.containers:
            ax.text(200, 0.6, "not run", ha="center", color="grey")
    axes[0].set_ylabel("win rate vs base (Wilson 95%)")
    handles = {}
    for ax in axes:
        handles.update(zip(*reversed(ax.get_legend_handles_labels()), strict=True))
    if handles:
        axes[0].legend(handles.values(), handles.keys(), fontsize=7, loc="lower right")
    model = "tiny model" if base == TINY_MODEL else base
    fig.suptitle(f"{model}, label noise {noise:.0%}: 3 rounds of 100 (lines) vs 1 round of 300 (squares)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def rows_for(results: Sequence[ArmResult], base: str = TINY_MODEL) -> list[BenchRow]:
    """Per (rule, noise, strategy): labels to the bar, vs the random selection's."""
    out = []
    for noise in sorted({r.arm.noise for r in results}):
        for oracle in RULES:
            group = {s: arms_of(results, oracle, s, noise, base) for s in STRATEGIES}
            reference = labels_to_target(curve(group["random"]))
            for strategy in STRATEGIES[1:]:
                if not group[strategy]:
                    continue
                points = curve(group[strategy])
                needed = labels_to_target(points)
                best = max(points, key=lambda p: p.win_rate, default=None)
                what = f"{rule_name(oracle)}, noise {noise:.0%}: labels to 68% (Wilson low > 0.5), {strategy}"
                note = (
                    f"best {best.win_rate:.2f} [{best.ci95[0]:.2f}, {best.ci95[1]:.2f}] n={best.n} at "
                    f"{best.labels}; "
                    if best
                    else ""
                ) + f"random: {reference or 'not within 300'}; seed: {SEED_LABELS:,}; lower is better"
                value = float("nan") if needed is None else needed
                out.append(row(AREA, what, value, "labels", "random pairs", reference, note=note))
    return out


def run(quick: bool = False) -> list[BenchRow]:
    with tempfile.TemporaryDirectory(prefix="prefloop-label-eff-") as tmp:
        return rows_for(sweep(plan(quick), Path(tmp) / "arms.jsonl"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_label_efficiency",
        description="Win rate vs base against train labels, per pair selection, schedule and label noise.",
    )
    parser.add_argument("--out", type=Path, help="run the sweep, appending arms to this JSON-lines file")
    parser.add_argument("--quick", action="store_true", help="with --out: the quick plan")
    parser.add_argument(
        "--base", default=TINY_MODEL, help=f"the model of the arms: {TINY_MODEL} (default) or {DEFAULT_BASE}"
    )
    parser.add_argument("--rules", help="with --out: only these rules of the plan, e.g. number,no-colon")
    parser.add_argument(
        "--noise", type=float, action="append", help="with --out: only this noise (repeatable)"
    )
    parser.add_argument(
        "--seed", dest="seeds", type=int, action="append",
        help="with --out: run the plan at this seed (repeatable; default 0): noise, sampling, training",
    )  # fmt: skip
    parser.add_argument(
        "--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
        help="with --out: an ablation, these settings on every arm (kept apart from the default arms)",
    )  # fmt: skip
    parser.add_argument("--table", type=Path, help="print the README tables, draw the plots from this file")
    parser.add_argument("--plot-dir", type=Path, default=REPO_ROOT / "docs" / "label-efficiency")
    args = parser.parse_args(argv)
    if args.out:
        rules = set(args.rules.split(",")) if args.rules else None
        arms = [
            replace(a, sets=tuple(args.sets), seed=seed)
            for seed in args.seeds or [0]
            for a in plan(args.quick, args.base)
            if (rules is None or rule_name(a.oracle) in rules) and (not args.noise or a.noise in args.noise)
        ]
        sweep(arms, args.out)
    if args.table:
        results = read_results(args.table)
        suffix = "" if args.base == TINY_MODEL else f"-{args.base}"
        for noise in sorted({r.arm.noise for r in results if r.arm.base == args.base}):
            print(f"\nnoise {noise:.0%}\n\n{markdown_table(results, noise, args.base)}")
            print(plot(results, args.plot_dir / f"noise-{round(noise * 100)}{suffix}.png", noise, args.base))
        if seeds := seeds_table(results, args.base):
            print(f"\nseeds\n\n{seeds}")
        if ablations := ablation_table(results, args.base):
            print(f"\nablations\n\n{ablations}")
        for r in results:
            if r.error:
                print(f"ERROR {r.arm.id}: {r.error[:400]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
