"""From eval judgments to the report's numbers and sentences: pure, no database, no files.

``report.py`` gathers :class:`JudgmentRecord` rows and health samples from the database and writes the
files; everything a statistician would check happens here, on plain records, so it is testable alone.
Judgments are analysed per annotator kind (human, simulated, imported): never pooled across kinds.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core.config import ReportConfig
from evaluation.health import Health, flags
from evaluation.stats import (
    HeadToHead,
    agreement_pairs,
    binomial_p,
    bootstrap_bradley_terry,
    bradley_terry,
    cohen_kappa,
    fleiss_kappa,
    judgments_needed,
    krippendorff_alpha_nominal,
    wilson_interval,
)

KIND_ORDER = ("human", "simulated", "imported")  # the first kind present is the report's headline group
SIGN_TEST = "exact two-sided sign test of wins vs losses (ties and both-bad excluded)"
ALPHA = 0.05
IMPRACTICAL = 20  # more than this many times the judgments so far: call the difference negligible


@dataclass(frozen=True)
class JudgmentRecord:
    """One current, non-skip judgment of an eval pair, with what the statistics need to know about it."""

    comparison_id: int
    annotator: str
    annotator_kind: str
    choice: str  # "a" | "b" | "tie" | "both_bad", naming the comparison's candidates (not screen sides)
    left: str | None  # "a" or "b": the candidate shown on the left; None when not recorded
    model_a: str
    model_b: str
    text_a: str
    text_b: str


@dataclass(frozen=True)
class VersionInfo:
    name: str
    kind: str  # VersionKind value
    round: int | None  # the round that produced it; 0 for a base model, None for external text
    order: int  # creation order: the later of two versions is the "model", the earlier its baseline


def _r(x: float, digits: int = 3) -> float | None:
    return None if x is None or math.isnan(x) else round(x, digits)


def _p(p: float) -> float:
    """A p-value to 3 decimals, or 3 significant digits below 0.001 (so it never prints as 0)."""
    return round(p, 3) if p >= 0.001 else float(f"{p:.3g}")


def share_summary(k: int, n: int) -> dict[str, Any]:
    """k of n with its Wilson interval and an exact two-sided binomial p-value against 50%."""
    lo, hi = wilson_interval(k, n)
    return {
        "n": n,
        "k": k,
        "share": _r(k / n) if n else None,
        "ci95": [_r(lo), _r(hi)],
        "p_value": _p(binomial_p(k, n)),
    }


def head_to_head_summary(h2h: HeadToHead) -> dict[str, Any]:
    lo, hi = h2h.ci95
    return {
        "n": h2h.n,
        "wins": h2h.wins,
        "losses": h2h.losses,
        "ties": h2h.ties,
        "both_bad": h2h.both_bad,
        "win_rate": _r(h2h.win_rate),
        "ci95": [_r(lo), _r(hi)],
        "p_value": _p(h2h.p_value),
    }


def verdict(model: str, baseline: str, h2h: HeadToHead) -> tuple[str, int | None]:
    """What the judgments say, in words, and how many more would settle it (None: no number would)."""
    if h2h.n == 0:
        return "no eval judgments yet.", None
    if h2h.p_value < ALPHA and h2h.wins != h2h.losses:
        winner, loser = (model, baseline) if h2h.wins > h2h.losses else (baseline, model)
        return f"{winner} is preferred over {loser}.", 0
    needed = judgments_needed(h2h.win_rate, h2h.n, alpha=ALPHA)
    if needed is None:
        return (
            "no preference either way; at an observed 50% no number of further judgments would show a "
            "difference, only narrow the interval.",
            None,
        )
    if needed == 0:
        return (
            f"not significant, although {h2h.n} judgments would usually suffice at this win rate with 80% "
            "power; the true difference is probably smaller than observed.",
            0,
        )
    if needed > IMPRACTICAL * h2h.n:
        return (
            f"no meaningful preference: at the observed {h2h.win_rate:.1%} about {needed:,} more eval "
            "judgments would be needed to tell it from 50% with 80% power, so treat the two as equal.",
            needed,
        )
    return (
        f"too few judgments to conclude. If the true win rate is {h2h.win_rate:.0%}, about {needed:,} more "
        "eval judgments are needed to tell it from 50% with 80% power.",
        needed,
    )


def conclusion(model: str, baseline: str, h2h: HeadToHead) -> tuple[str, int | None]:
    """The observed figures and the verdict in one sentence, for the report body."""
    words, needed = verdict(model, baseline, h2h)
    if h2h.n == 0:
        return f"{model} vs {baseline}: {words}", needed
    lo, hi = h2h.ci95
    return (
        f"{model} won {h2h.win_rate:.0%} of {h2h.n} judgments against {baseline} "
        f"(95% interval {lo:.0%}-{hi:.0%}; sign test p = {h2h.p_value:.2g}): {words}",
        needed,
    )


def _orient(a: str, b: str, versions: dict[str, VersionInfo], anchor: str) -> tuple[str, str]:
    """(model, baseline): the anchor (base) is always the baseline; otherwise the earlier version is."""

    def rank(name: str) -> tuple[int, int]:
        info = versions.get(name)
        return (0 if name == anchor else 1, info.order if info else 0)

    return (a, b) if rank(a) > rank(b) else (b, a)


def _score_of(record: JudgmentRecord, model: str) -> str:
    """The judgment from ``model``'s side: "win", "loss", "tie" or "both_bad"."""
    if record.choice in ("tie", "both_bad"):
        return record.choice
    chosen = record.model_a if record.choice == "a" else record.model_b
    return "win" if chosen == model else "loss"


def _h2h(outcomes: Counter) -> HeadToHead:
    return HeadToHead(outcomes["win"], outcomes["loss"], outcomes["tie"], outcomes["both_bad"])


def comparisons(
    records: Sequence[JudgmentRecord], versions: dict[str, VersionInfo], anchor: str
) -> list[dict[str, Any]]:
    """Each (model, baseline) pair of versions that met in eval pairs, overall and per annotator."""
    totals: dict[tuple[str, str], Counter] = defaultdict(Counter)
    per_annotator: dict[tuple[str, str], dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    for rec in records:
        if rec.model_a == rec.model_b:
            continue
        model, baseline = _orient(rec.model_a, rec.model_b, versions, anchor)
        outcome = _score_of(rec, model)
        totals[(model, baseline)][outcome] += 1
        per_annotator[(model, baseline)][rec.annotator][outcome] += 1

    def order(pair: tuple[str, str]) -> tuple:
        return tuple(-1 if m == anchor else versions[m].order if m in versions else 0 for m in pair)

    out = []
    for model, baseline in sorted(totals, key=order):
        h2h = _h2h(totals[(model, baseline)])
        words, needed = conclusion(model, baseline, h2h)
        short, _ = verdict(model, baseline, h2h)
        out.append(
            {
                "model": model,
                "baseline": baseline,
                **head_to_head_summary(h2h),
                "test": SIGN_TEST,
                "judgments_needed": needed,
                "conclusion": words,
                "verdict": short,
                "annotators": {
                    name: head_to_head_summary(_h2h(counts))
                    for name, counts in sorted(per_annotator[(model, baseline)].items())
                },
            }
        )
    return out


def battles(records: Sequence[JudgmentRecord]) -> list[tuple[str, str, float]]:
    """Chatbot Arena battles: (model_a, model_b, score of model_a), ties and both-bad as ½."""
    score = {"a": 1.0, "b": 0.0, "tie": 0.5, "both_bad": 0.5}
    return [(r.model_a, r.model_b, score[r.choice]) for r in records if r.model_a != r.model_b]


def bradley_terry_summary(
    records: Sequence[JudgmentRecord], versions: dict[str, VersionInfo], anchor: str, rounds: int, seed: int
) -> dict[str, Any]:
    fights = battles(records)
    ratings = bradley_terry(fights, anchor=anchor)
    intervals = bootstrap_bradley_terry(fights, rounds=rounds, seed=seed, anchor=anchor)
    played = Counter(m for a, b, _ in fights for m in (a, b))
    names = sorted(ratings, key=lambda m: (m != anchor, versions[m].order if m in versions else 0, m))
    return {
        name: {
            "rating": round(ratings[name], 1),
            "ci95": [round(intervals[name][0], 1), round(intervals[name][1], 1)],
            "round": versions[name].round if name in versions else None,
            "battles": played[name],
        }
        for name in names
    }


def _bias_summary(hits: dict[str, list[bool]], what: str) -> dict[str, Any]:
    """Share of ``True`` overall and per annotator, with a sentence on whether it departs from 50%."""
    every = [h for values in hits.values() for h in values]
    overall = share_summary(sum(every), len(every))
    if not every:
        overall["statement"] = "Not measurable: no decisive judgment to measure it on."
    elif overall["p_value"] < ALPHA:
        overall["statement"] = (
            f"Biased: {what} in {overall['share']:.0%} of {len(every)} decisive judgments "
            f"(p = {overall['p_value']:.2g})."
        )
    else:
        overall["statement"] = (
            f"No evidence of bias: {what} in {overall['share']:.0%} of {len(every)} decisive judgments "
            f"(p = {overall['p_value']:.2g})."
        )
    overall["annotators"] = {name: share_summary(sum(v), len(v)) for name, v in sorted(hits.items()) if v}
    return overall


def position_bias(records: Sequence[JudgmentRecord]) -> dict[str, Any]:
    """How often a decisive judgment chose the candidate shown on the left (50% if unbiased)."""
    hits: dict[str, list[bool]] = defaultdict(list)
    for rec in records:
        if rec.choice in ("a", "b") and rec.left in ("a", "b"):
            hits[rec.annotator].append(rec.choice == rec.left)
    return _bias_summary(hits, "the left side won")


def length_bias(records: Sequence[JudgmentRecord]) -> dict[str, Any]:
    """How often a decisive judgment chose the longer of two candidates of different length."""
    hits: dict[str, list[bool]] = defaultdict(list)
    for rec in records:
        len_a, len_b = len(rec.text_a.strip()), len(rec.text_b.strip())
        if rec.choice in ("a", "b") and len_a != len_b:
            hits[rec.annotator].append((rec.choice == "a") == (len_a > len_b))
    return _bias_summary(hits, "the longer candidate won")


def agreement(records: Sequence[JudgmentRecord]) -> dict[str, Any]:
    """Inter-annotator agreement on eval pairs judged by more than one annotator."""
    labels: dict[int, dict[str, str]] = defaultdict(dict)
    for rec in records:
        labels[rec.comparison_id][rec.annotator] = rec.choice
    shared = {cid: by for cid, by in labels.items() if len(by) > 1}
    if not shared:
        return {"items": 0, "statement": "No eval pair was judged by more than one annotator."}
    cohen = []
    for (first, second), (xs, ys) in sorted(agreement_pairs(shared).items()):
        same = sum(x == y for x, y in zip(xs, ys, strict=True))
        cohen.append(
            {
                "annotators": [first, second],
                "n": len(xs),
                "percent_agreement": _r(same / len(xs)),
                "kappa": _r(cohen_kappa(xs, ys)),
            }
        )
    # Fleiss' κ needs the same number of raters per item: use the most common count
    raters = Counter(len(by) for by in shared.values()).most_common(1)[0][0]
    categories = sorted({c for by in shared.values() for c in by.values()})
    table = [[list(by.values()).count(c) for c in categories] for by in shared.values() if len(by) == raters]
    alpha = krippendorff_alpha_nominal([list(by.values()) for by in shared.values()])
    return {
        "items": len(shared),
        "cohen_kappa": cohen,
        "fleiss_kappa": {"kappa": _r(fleiss_kappa(table)), "items": len(table), "raters_per_item": raters},
        "krippendorff_alpha": {"alpha": _r(alpha), "items": len(shared)},
        "statement": agreement_statement(alpha, len(shared)),
    }


def agreement_statement(alpha: float, items: int) -> str:
    """Krippendorff's rule of thumb: α ≥ 0.8 reliable, ≥ 0.667 tentative, below that unreliable."""
    if math.isnan(alpha):
        return f"Agreement is undefined on {items} shared pairs (every annotator gave the same label)."
    level = "reliable" if alpha >= 0.8 else "tentative" if alpha >= 0.667 else "low: labels are noisy"
    return f"Krippendorff's alpha = {alpha:.2f} on {items} shared pairs ({level})."


def group_analysis(
    records: Sequence[JudgmentRecord], versions: dict[str, VersionInfo], anchor: str, bounds: ReportConfig
) -> dict[str, Any]:
    """Everything computed from one annotator kind's judgments."""
    return {
        "judgments": len(records),
        "annotators": sorted({r.annotator for r in records}),
        "comparisons": comparisons(records, versions, anchor),
        "bradley_terry": bradley_terry_summary(
            records, versions, anchor, bounds.bootstrap_rounds, bounds.seed
        ),
        "position_bias": position_bias(records),
        "length_bias": length_bias(records),
        "agreement": agreement(records),
    }


def health_summary(
    health: dict[str, Health], versions: dict[str, VersionInfo], anchor: str, bounds: ReportConfig
) -> tuple[dict[str, Any], list[str]]:
    """Health figures of every model (base first) and the flag sentences for the top of the report."""
    base = health.get(anchor)
    out: dict[str, Any] = {}
    all_flags: list[str] = []
    for name in sorted(health, key=lambda m: (m != anchor, versions[m].order if m in versions else 0, m)):
        found = flags(health[name], None if name == anchor else base, bounds, model=name)
        out[name] = {**dataclasses.asdict(health[name]), "flags": found}
        all_flags.extend(found)
    return out, all_flags


def headline(group: dict[str, Any], kind: str) -> str:
    """One line for the terminal: the newest model against base (or its first baseline)."""
    if not group["comparisons"]:
        return "No eval judgments yet: label eval pairs in the app (or import judgments), then re-run."
    latest_model = group["comparisons"][-1]["model"]
    newest = next(c for c in group["comparisons"] if c["model"] == latest_model)  # vs base when it met base
    return (
        f"{newest['model']} vs {newest['baseline']} ({kind} annotators): win rate {newest['win_rate']:.2f} "
        f"[{newest['ci95'][0]:.3f}, {newest['ci95'][1]:.3f}] over {newest['n']} judgments, "
        f"sign test p = {newest['p_value']:.3g}: {newest['verdict']}"
    )


def analyse(
    records: Sequence[JudgmentRecord],
    versions: dict[str, VersionInfo],
    health: dict[str, Health],
    bounds: ReportConfig,
) -> dict[str, Any]:
    """The whole report.json: the headline kind's figures at the top level, every kind under "groups"."""
    anchor = next(
        (v.name for v in sorted(versions.values(), key=lambda v: v.order) if v.kind == "base"), "base"
    )
    by_kind: dict[str, list[JudgmentRecord]] = defaultdict(list)
    for rec in records:
        by_kind[rec.annotator_kind].append(rec)
    kinds = [k for k in KIND_ORDER if k in by_kind] + sorted(set(by_kind) - set(KIND_ORDER))
    groups = {kind: group_analysis(by_kind[kind], versions, anchor, bounds) for kind in kinds}
    primary = kinds[0] if kinds else "human"
    top = groups.get(primary) or group_analysis([], versions, anchor, bounds)
    health_out, health_flags = health_summary(health, versions, anchor, bounds)
    return {
        "headline": headline(top, primary),
        "annotator_kind": primary,
        "flags": health_flags,
        "comparisons": top["comparisons"],
        "bradley_terry": top["bradley_terry"],
        "position_bias": top["position_bias"],
        "length_bias": top["length_bias"],
        "agreement": top["agreement"],
        "power": [
            {k: c[k] for k in ("model", "baseline", "n", "win_rate", "judgments_needed", "conclusion")}
            for c in top["comparisons"]
        ],
        "health": health_out,
        "groups": groups,
        "anchor": anchor,
        "test": SIGN_TEST,
    }
