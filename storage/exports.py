"""Data out: TRL and LLaMA-Factory preference datasets, and every raw judgment.

Training exports hold only train-purpose comparisons of train-split prompts, aggregated by majority
(``storage.aggregate``); every pair left out is counted by reason in ``ExportResult.dropped``. Eval-split
prompts are never exported: they are kept for the blind head-to-head evaluation. Rows are sorted by
comparison id and written via temporary files + ``os.replace``, so the same database gives
byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, select

from core.errors import PrefloopError
from storage.aggregate import aggregate
from storage.db import session_scope
from storage.files import atomic_replace_dir, atomic_write_bytes
from storage.models import (
    Annotator,
    Candidate,
    Comparison,
    Judgment,
    ModelVersion,
    Prompt,
    Purpose,
    Split,
    prompt_messages,
)
from storage.queries import current

EXPORT_FORMATS = ("trl", "llamafactory", "judgments", "arena")
LLAMAFACTORY_NAME = "prefloop_dpo"
SHAREGPT_FROM = {"system": "system", "user": "human", "assistant": "gpt"}


@dataclass
class ExportResult:
    n_train: int  # rows written for training (all rows for llamafactory/judgments)
    n_validation: int
    dropped: dict[str, int]  # reason -> comparisons left out
    data_hash: str  # sha256 of the written data files (for trl: train.jsonl then validation.jsonl)
    paths: dict[str, Path] = field(default_factory=dict)
    n_train_prompts: int = 0
    n_validation_prompts: int = 0
    n_tie_rows: int = 0  # of n_train: rows from ties and both-bad, two per comparison (``ties=True``)


@dataclass(frozen=True)
class PreferencePair:
    comparison_id: int
    prompt: Prompt
    chosen: str
    rejected: str
    tie: bool = False  # one of the two opposite rows of a tie or both-bad outcome


def preference_pairs(session: Session, *, ties: bool = False) -> tuple[list[PreferencePair], dict[str, int]]:
    """Every comparison that makes a DPO pair (sorted by id), and why the others do not.

    Reasons: 'eval_purpose' (an evaluation pair), 'eval_prompt' (its prompt is held out for
    evaluation), and the aggregation outcomes 'unjudged', 'skip', 'tie', 'both_bad', 'no_majority'.
    With ``ties`` a tie or both-bad outcome is kept as two rows, each candidate chosen once: under the
    sigmoid loss the pair then pulls its reward margin towards 0, Bradley-Terry's tie as half a win
    each (``train.use_ties``).
    """
    votes: dict[int, list] = defaultdict(list)
    for comparison_id, choice in session.exec(
        select(Judgment.comparison_id, Judgment.choice).where(current())
    ):
        votes[comparison_id].append(choice)
    prompts = {p.id: p for p in session.exec(select(Prompt))}
    texts = dict(session.exec(select(Candidate.id, Candidate.text)).all())
    dropped: Counter[str] = Counter()
    pairs = []
    for comp in session.exec(select(Comparison).order_by(Comparison.id)):
        prompt = prompts[comp.prompt_id]
        if comp.purpose != Purpose.train:
            dropped["eval_purpose"] += 1
            continue
        if prompt.split != Split.train:
            dropped["eval_prompt"] += 1
            continue
        outcome = aggregate(votes.get(comp.id, []))
        if ties and outcome in ("tie", "both_bad"):
            a, b = texts[comp.candidate_a_id], texts[comp.candidate_b_id]
            pairs += [PreferencePair(comp.id, prompt, x, y, tie=True) for x, y in ((a, b), (b, a))]
            continue
        if outcome not in ("a", "b"):
            dropped[outcome] += 1
            continue
        winner, loser = (comp.candidate_a_id, comp.candidate_b_id)[:: 1 if outcome == "a" else -1]
        pairs.append(PreferencePair(comp.id, prompt, texts[winner], texts[loser]))
    return pairs, dict(sorted(dropped.items()))


def validation_prompt_ids(prompts: list[Prompt], share: float, seed: int) -> set[int]:
    """A stable share of the prompts (by a seeded hash of each prompt's key) held out for validation.

    At least one prompt when ``share`` > 0 and there are two or more, and never all of them.
    """
    if share <= 0 or len(prompts) < 2:
        return set()
    ranked = sorted(prompts, key=lambda p: hashlib.sha256(f"{seed}:{p.normalized_hash}".encode()).hexdigest())
    count = min(max(1, round(share * len(prompts))), len(prompts) - 1)
    return {p.id for p in ranked[:count]}


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def _trl_row(pair: PreferencePair) -> dict[str, Any]:
    return {
        "prompt": prompt_messages(pair.prompt),
        "chosen": [{"role": "assistant", "content": pair.chosen}],
        "rejected": [{"role": "assistant", "content": pair.rejected}],
    }


def export_trl(
    engine: Engine, out_dir: Path, *, validation_share: float = 0.1, seed: int = 0, ties: bool = False
) -> ExportResult:
    """Conversational TRL rows as train.jsonl / validation.jsonl and a DatasetDict at ``out_dir/dataset``.

    Train and validation are split by prompt, so no prompt occurs in both. With ``ties`` the train split
    also holds every tie and both-bad outcome as two opposite rows (``preference_pairs``); validation
    keeps decisive pairs only, so its reward accuracy still measures agreement with the labels.
    """
    out_dir = Path(out_dir)
    with session_scope(engine) as session:
        pairs, dropped = preference_pairs(session, ties=ties)
    # held out among the prompts of decisive pairs, so using ties leaves the validation split as it was
    prompts = list({p.prompt.id: p.prompt for p in pairs if not p.tie}.values())
    held_out = validation_prompt_ids(prompts, validation_share, seed)
    train = [_trl_row(p) for p in pairs if p.prompt.id not in held_out]
    validation = [_trl_row(p) for p in pairs if p.prompt.id in held_out and not p.tie]
    held_out_ties = len({p.comparison_id for p in pairs if p.prompt.id in held_out and p.tie})
    if held_out_ties:
        dropped = dict(sorted({**dropped, "tie_validation": held_out_ties}.items()))
    train_bytes, validation_bytes = _jsonl(train), _jsonl(validation)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "train": out_dir / "train.jsonl",
        "validation": out_dir / "validation.jsonl",
        "dataset": out_dir / "dataset",
    }
    _save_dataset_dict({"train": train, "validation": validation}, paths["dataset"])
    atomic_write_bytes(paths["train"], train_bytes)
    atomic_write_bytes(paths["validation"], validation_bytes)
    return ExportResult(
        n_train=len(train),
        n_validation=len(validation),
        dropped=dropped,
        data_hash=hashlib.sha256(train_bytes + validation_bytes).hexdigest(),
        paths=paths,
        n_train_prompts=len({p.prompt.id for p in pairs} - held_out),  # tie-only prompts too
        n_validation_prompts=len(held_out),
        n_tie_rows=sum(p.tie for p in pairs if p.prompt.id not in held_out),
    )


def _save_dataset_dict(splits: dict[str, list[dict[str, Any]]], target: Path) -> None:
    """A ``datasets.DatasetDict`` a TRL run loads with ``load_from_disk``, swapped into place whole."""
    import datasets
    from datasets import Dataset, DatasetDict, Features, List, Value

    message = List({"role": Value("string"), "content": Value("string")})
    features = Features({"prompt": message, "chosen": message, "rejected": message})
    dataset = DatasetDict(
        {
            name: Dataset.from_dict({k: [row[k] for row in rows] for k in features}, features=features)
            for name, rows in splits.items()
        }
    )
    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        with tempfile.TemporaryDirectory(prefix=f".{target.name}.", dir=target.parent) as tmp:
            build = Path(tmp) / target.name
            # one shard per split even when empty: an empty split saved with zero shards cannot be loaded
            dataset.save_to_disk(str(build), num_shards=dict.fromkeys(splits, 1))
            atomic_replace_dir(build, target)
    finally:
        if bars:
            datasets.enable_progress_bars()


def _sharegpt_record(pair: PreferencePair) -> dict[str, Any]:
    messages = prompt_messages(pair.prompt)
    return {
        "conversations": [{"from": SHAREGPT_FROM[m["role"]], "value": m["content"]} for m in messages],
        "chosen": {"from": "gpt", "value": pair.chosen},
        "rejected": {"from": "gpt", "value": pair.rejected},
    }


def export_llamafactory(engine: Engine, out_dir: Path, *, name: str = LLAMAFACTORY_NAME) -> ExportResult:
    """LLaMA-Factory sharegpt ranking JSON plus its ``dataset_info.json`` entry (merged if the file exists).

    Use ``dataset_dir: OUT`` and ``dataset: NAME`` in a LLaMA-Factory DPO config (it makes its own
    validation split with ``val_size``).
    """
    out_dir = Path(out_dir)
    with session_scope(engine) as session:
        pairs, dropped = preference_pairs(session)
    data = (json.dumps([_sharegpt_record(p) for p in pairs], ensure_ascii=False, indent=2) + "\n").encode(
        "utf-8"
    )
    info_path = out_dir / "dataset_info.json"
    info = _read_dataset_info(info_path)
    info[name] = {
        "file_name": f"{name}.json",
        "ranking": True,
        "formatting": "sharegpt",
        "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"},
    }
    data_path = out_dir / f"{name}.json"
    atomic_write_bytes(data_path, data)
    atomic_write_bytes(info_path, (json.dumps(info, ensure_ascii=False, indent=2) + "\n").encode("utf-8"))
    return ExportResult(
        n_train=len(pairs),
        n_validation=0,
        dropped=dropped,
        data_hash=hashlib.sha256(data).hexdigest(),
        paths={"data": data_path, "dataset_info": info_path},
        n_train_prompts=len({p.prompt.id for p in pairs}),
    )


def _read_dataset_info(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PrefloopError(
            f"{path}: cannot read the existing dataset_info.json ({exc}); fix or remove it"
        ) from None
    if not isinstance(info, dict):
        raise PrefloopError(f"{path}: expected a JSON object of dataset entries; fix or remove it")
    return info


def export_judgments(engine: Engine, out_dir: Path) -> ExportResult:
    """``judgments.jsonl``: every decision ever made, superseded ones included, nothing aggregated away.

    ``strength`` is the graded choice's margin (1 slightly, 2 much better; ``storage.models.Strength``) or
    null; the majority-vote exports and the report read ``choice`` only, so they can ignore it.
    """
    out_dir = Path(out_dir)
    with session_scope(engine) as session:
        prompts = {p.id: p for p in session.exec(select(Prompt))}
        versions = dict(session.exec(select(ModelVersion.id, ModelVersion.name)).all())
        candidates = {c.id: c for c in session.exec(select(Candidate))}
        comparisons = {c.id: c for c in session.exec(select(Comparison))}
        annotators = {a.id: a for a in session.exec(select(Annotator))}
        rows = []
        for j in session.exec(select(Judgment).order_by(Judgment.id)):
            comp = comparisons[j.comparison_id]
            prompt = prompts[comp.prompt_id]
            annotator = annotators[j.annotator_id]
            rows.append(
                {
                    "judgment_id": j.id,
                    "comparison_id": comp.id,
                    "purpose": comp.purpose.value,
                    "round": comp.round_id,
                    "prompt_id": prompt.id,
                    "prompt_split": prompt.split.value,
                    "prompt": prompt_messages(prompt),
                    **{
                        side: {"id": c.id, "model_version": versions[c.model_version_id], "text": c.text}
                        for side, c in (
                            ("a", candidates[comp.candidate_a_id]),
                            ("b", candidates[comp.candidate_b_id]),
                        )
                    },
                    "annotator": annotator.name,
                    "annotator_kind": annotator.kind.value,
                    "choice": j.choice.value,
                    "left": j.left,
                    "ms_to_decide": j.ms_to_decide,
                    "note": j.note,
                    "strength": j.strength,
                    "created_at": j.created_at.isoformat(),
                    "superseded_at": j.superseded_at.isoformat() if j.superseded_at else None,
                }
            )
    data = _jsonl(rows)
    path = out_dir / "judgments.jsonl"
    atomic_write_bytes(path, data)
    return ExportResult(
        n_train=len(rows),
        n_validation=0,
        dropped={},
        data_hash=hashlib.sha256(data).hexdigest(),
        paths={"data": path},
    )
