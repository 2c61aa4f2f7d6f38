"""Training benchmarks on the tiny model with the seed's 1,140 human labels.

1. Seconds per stage of ``train-round`` (target: <= 120 s in total on 2 cores).
2. DPO throughput (pairs/s) and peak RSS of prefloop's configuration vs TRL's defaults, same data and
   epochs, each in its own process, with final validation loss and reward accuracy of each.
3. Round policy ``continue`` vs ``from-base``: round 1 on the seed labels, round 2 on oracle labels of
   round 1's pairs, trained both ways; each round-2 adapter judged by the same oracle against base and
   round 1 on the held-out prompts, with output health beside the win rate.
The GPU workload (1,026 pairs x 3 epochs on a Qwen2.5-0.5B-shaped model) needs a lent GPU: not run here.

``python -m bench.bench_training [--quick]`` prints the rows as JSON.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import BenchRow, row
from core.config import Config, load_config
from core.paths import REPO_ROOT
from storage.db import make_engine, migrate

AREA = "training"
SEED = REPO_ROOT / "data" / "youtube-titles"
ORACLE = "length-band"
TRAIN_ROUND_TARGET_S = 120.0
QUICK_IDEAS = 30  # --quick: the labels of 30 seed ideas, 3 candidates per prompt in later rounds
QUICK_OVERRIDES = ("generation.n=3", "round.eval_samples_per_model=6")


def seed_database(path: Path, ideas: int | None = None):
    """A fresh database with the seed ideas as prompts and the seed's human labels (first ``ideas`` ideas)."""
    from storage.imports import import_labels, import_prompts

    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    import_prompts(engine, SEED / "ideas.csv", column="Idea", template="youtube-title")
    labels = SEED / "idea-title_pairs-preferences.csv"
    if ideas is not None:
        from testkit.train_seed import seed_label_subset

        labels = seed_label_subset(path.parent / "labels.csv", ideas)
    import_labels(engine, labels, template="youtube-title")
    return engine


def bench_config(workdir: Path, *overrides: str) -> Config:
    config = load_config(None, ["generation.backend=transformers", *overrides])
    config.var_dir = workdir / "var"
    return config


def stage_rows(engine, config: Config) -> tuple[list[BenchRow], Any]:
    from loop.round import train_round

    summary = train_round(engine, config, echo=lambda line: print(line, file=sys.stderr))
    rows = [
        row(AREA, f"train-round stage {stage}", sec, "s", note=f"{summary.n_train} train pairs")
        for stage, sec in summary.stage_seconds.items()
    ]
    rows.append(
        row(
            AREA,
            f"train-round total ({summary.n_train} pairs, {config.train.num_train_epochs:g} epoch(s))",
            summary.total_seconds,
            "s",
            baseline_name="target (issue 5)",
            baseline=TRAIN_ROUND_TARGET_S,
            note="lower is better; ratio < 1 meets the target",
        )
    )
    return rows, summary


def trl_default_overrides(epochs: float) -> dict[str, Any]:
    """TRL 1.16's DPOConfig as shipped, except what a CPU needs to start at all (use_cpu) and our epochs."""
    return {
        "use_cpu": True,
        "num_train_epochs": epochs,
        "eval_strategy": "epoch",
        "save_strategy": "no",
        "report_to": [],
        "logging_steps": 10,
    }


def _train_in_child(workdir: Path, name: str, dataset: Path, config: Config, overrides) -> dict[str, Any]:
    from training.launch import RESULT_FILE, write_spec

    out = workdir / name
    spec = write_spec(
        workdir / f"{name}.json",
        base_model=config.model.base,
        dataset_dir=dataset,
        output_dir=out,
        train=config.train,
        parent_adapter=None,
        max_lora_rank=config.generation.vllm_max_lora_rank,
        dpo_overrides=overrides,
    )
    subprocess.run([sys.executable, "-m", "training.launch", str(spec)], check=True, cwd=REPO_ROOT)
    return json.loads((out / RESULT_FILE).read_text(encoding="utf-8"))


def throughput_rows(engine, config: Config, workdir: Path) -> list[BenchRow]:
    from storage.exports import export_trl

    export = export_trl(engine, workdir / "export", validation_share=config.train.validation_share)
    epochs = config.train.num_train_epochs
    ours = _train_in_child(workdir, "prefloop", export.paths["dataset"], config, None)
    trl = _train_in_child(
        workdir, "trl-defaults", export.paths["dataset"], config, trl_default_overrides(epochs)
    )
    what = f"{export.n_train} pairs x {epochs:g} epoch(s)"
    rows = [
        row(AREA, f"DPO throughput, prefloop config ({what})", ours["pairs_per_second"], "pairs/s",
            "TRL defaults", trl["pairs_per_second"], note="higher is better"),
        row(AREA, "DPO peak RSS, prefloop config", ours["extra"]["peak_rss_mib"], "MiB",
            "TRL defaults", trl["extra"]["peak_rss_mib"], note="lower is better"),
    ]  # fmt: skip
    for key, label in (
        ("eval_rewards/accuracies", "validation reward accuracy"),
        ("eval_loss", "validation loss"),
    ):
        note = "higher is better" if "accuracies" in key else "each run's own loss (ours adds the SFT term)"
        rows.append(
            row(AREA, f"{label}, prefloop config", ours["final"].get(key, float("nan")), "",
                "TRL defaults", trl["final"].get(key, float("nan")), note=note)
        )  # fmt: skip
    return rows


def oracle_scores(engine, config: Config, new: str, baseline: str) -> dict[str, Any]:
    """The oracle's verdicts on the queued eval pairs new-vs-baseline (deterministic: no noise)."""
    from sqlmodel import select

    from evaluation.stats import wilson_interval, win_rate
    from labelling.oracles import load_oracle
    from storage.db import session_scope
    from storage.models import Candidate, Comparison, ModelVersion, Prompt, Purpose

    oracle = load_oracle(ORACLE)
    wins = losses = ties = 0
    with session_scope(engine) as session:
        names = {v.id: v.name for v in session.exec(select(ModelVersion))}
        cands = {c.id: c for c in session.exec(select(Candidate))}
        prompts = {p.id: p.text for p in session.exec(select(Prompt))}
        for comp in session.exec(select(Comparison).where(Comparison.purpose == Purpose.eval)):
            a, b = cands[comp.candidate_a_id], cands[comp.candidate_b_id]
            by_name = {names[a.model_version_id]: a, names[b.model_version_id]: b}
            if set(by_name) != {new, baseline}:
                continue
            verdict = oracle(prompts[comp.prompt_id], by_name[new].text, by_name[baseline].text)
            wins, losses, ties = wins + (verdict == "a"), losses + (verdict == "b"), ties + (verdict == "tie")
    n = wins + losses + ties
    return {
        "n": n,
        "win_rate": win_rate(wins, losses, ties) if n else float("nan"),
        "ci95": wilson_interval(wins + ties / 2, n) if n else (float("nan"),) * 2,
    }


def eval_health(engine, version: str):
    from sqlmodel import select

    from evaluation.health import Sample, drawn_per_prompt, output_health
    from storage.db import session_scope
    from storage.models import Candidate, ModelVersion, Prompt, Split

    with session_scope(engine) as session:
        rows = session.exec(
            select(Candidate, Prompt.text)
            .join(ModelVersion, ModelVersion.id == Candidate.model_version_id)
            .join(Prompt, Prompt.id == Candidate.prompt_id)
            .where(ModelVersion.name == version, Prompt.split == Split.eval)
        ).all()
    samples = [Sample(c.prompt_id, c.text, c.finish_reason, text) for c, text in rows]
    return output_health(samples, drawn=drawn_per_prompt((c.prompt_id, c.sampling) for c, _ in rows))


def round_policy_rows(db_path: Path, config: Config, workdir: Path) -> list[BenchRow]:
    """Round 2 both ways from the same database state (round 1 done, its pairs labelled by the oracle)."""
    from labelling.oracles import load_oracle
    from labelling.simulate import simulate
    from loop.round import train_round
    from storage.models import Purpose

    engine = make_engine(f"sqlite:///{db_path}")
    simulate(engine, load_oracle(ORACLE), ORACLE, annotator=f"sim:{ORACLE}", settings=config.annotate,
             purpose=Purpose.train)  # fmt: skip
    engine.dispose()
    rows: list[BenchRow] = []
    results = {}
    for policy in ("continue", "from-base"):
        copy_dir = workdir / policy
        copy_dir.mkdir()
        shutil.copy(db_path, copy_dir / "prefloop.db")
        shutil.copytree(config.var_dir, copy_dir / "var")
        engine = make_engine(f"sqlite:///{copy_dir / 'prefloop.db'}")
        cfg = config.model_copy(deep=True)
        cfg.var_dir = copy_dir / "var"
        cfg.train.round_policy = policy
        summary = train_round(engine, cfg, echo=lambda line: print(line, file=sys.stderr))
        health = eval_health(engine, "round-2")
        results[policy] = {
            "vs_base": oracle_scores(engine, cfg, "round-2", "base"),
            "vs_round1": oracle_scores(engine, cfg, "round-2", "round-1"),
            "health": health,
            "train_s": summary.stage_seconds.get("train", 0.0),
        }
        engine.dispose()
    base_health = eval_health(make_engine(f"sqlite:///{db_path}"), "base")
    cont, fresh = results["continue"], results["from-base"]
    for key, label in (("vs_base", "vs base"), ("vs_round1", "vs round-1")):
        rows.append(
            row(AREA, f"round-2 win rate {label} under the {ORACLE} oracle, continue", cont[key]["win_rate"],
                "win rate", "from-base", fresh[key]["win_rate"],
                note=f"n={cont[key]['n']}/{fresh[key]['n']}; 95% CI continue "
                f"{cont[key]['ci95'][0]:.2f}-{cont[key]['ci95'][1]:.2f}, from-base "
                f"{fresh[key]['ci95'][0]:.2f}-{fresh[key]['ci95'][1]:.2f}")
        )  # fmt: skip
    for attr, label in (
        ("in_band_share", "share of titles in 30-75 chars"),
        ("eot_share", "end-of-turn rate"),
        ("distinct_share", "distinct samples per prompt"),
        ("median_chars", "median chars"),
    ):
        rows.append(
            row(AREA, f"round-2 {label}, continue", getattr(cont["health"], attr) or 0.0, "",
                "from-base", getattr(fresh["health"], attr) or 0.0,
                note=f"base: {getattr(base_health, attr)}")
        )  # fmt: skip
    rows.append(
        row(AREA, "round-2 training seconds, continue", cont["train_s"], "s", "from-base", fresh["train_s"])
    )
    return rows


def run(quick: bool = False) -> list[BenchRow]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-training-"))
    try:
        db_path = workdir / "prefloop.db"
        engine = seed_database(db_path, ideas=QUICK_IDEAS if quick else None)
        config = bench_config(workdir, *(QUICK_OVERRIDES if quick else ()))
        rows, _ = stage_rows(engine, config)
        rows += throughput_rows(engine, config, workdir)
        engine.dispose()
        rows += round_policy_rows(db_path, config, workdir)
        rows.append(row(AREA, "GPU: 1,026 pairs x 3 epochs, Qwen2.5-0.5B-shaped", float("nan"), "s",
                        note="not run: no GPU lent to this task"))  # fmt: skip
        return rows
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    print(json.dumps([r.as_dict() for r in run(quick="--quick" in sys.argv)], indent=1))
