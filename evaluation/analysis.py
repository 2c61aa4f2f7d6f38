"""From eval judgments to the report's numbers and sentences: pure, no database, no files.

``report.py`` gathers :class:`JudgmentRecord` rows and health samples from the database and writes the
files; everything a statistician would check happens here, on plain records, so it is testable alone.
The result is a tree of dataclasses (:class:`ReportData`), which is also the schema of report.json.

Three rules hold throughout, so the figures do not depend on how the data was stored:

- **Orientation.** A judgment names "candidate a/b" of its stored pair (a is the lower database id, i.e.
  whichever was inserted first). Every label is re-oriented before use: agreement names the candidate
  whose (model version, text) sorts first; position bias uses the side shown on the left; a model pair
  is oriented by prefloop round (newer against older) or else by Bradley-Terry rating, never by creation
  order.
- **Unit of inference.** An *item* is one prompt on which two model versions met: all judgments of their
  pairs on that prompt (several raters, several samples) are one observation. Intervals, tests, power and
  bootstraps work on items; per-judgment counts are kept beside.
- **Kinds apart.** Judgments are analysed per annotator kind (human, simulated, imported), never pooled.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.config import ReportConfig
from evaluation.health import Health, flags
from evaluation.stats import (
    CovariateFit,
    HeadToHead,
    ItemOutcomes,
    agreement_pairs,
    binomial_p,
    bootstrap_bradley_terry,
    bradley_terry,
    bradley_terry_covariate,
    cohen_kappa,
    fleiss_kappa,
    item_outcomes,
    judgments_needed,
    krippendorff_alpha_nominal,
    wilson_interval,
)

KIND_ORDER = ("human", "simulated", "imported")  # the first kind present is the report's headline group
SIGN_TEST = (
    "exact two-sided sign test of the items each model won by majority (items with an even split, ties "
    "and both-bad excluded); interval: Wilson score on the items' mean scores"
)
UNIT = "item: one prompt on which two model versions met (all judgments of their pairs on it count once)"
ALPHA = 0.05
IMPRACTICAL = 20  # more than this many times the items so far: call the difference negligible
LOPSIDED = 0.8  # a model on one side (or the longer one) in more than this share of its battles is noted
SCORE = {"win": 1.0, "loss": 0.0, "tie": 0.5, "both_bad": 0.5}


@dataclass(frozen=True)
class JudgmentRecord:
    """One current, non-skip judgment of an eval pair, with what the statistics need to know about it."""

    comparison_id: int
    prompt_key: str  # the prompt's normalised-text hash: the item, the same in every database
    annotator: str
    annotator_kind: str
    choice: str  # "a" | "b" | "tie" | "both_bad", naming the stored pair's candidates (not screen sides)
    left: str | None  # "a" or "b": the candidate shown on the left; None when not recorded
    model_a: str
    model_b: str
    text_a: str
    text_b: str


@dataclass(frozen=True)
class VersionInfo:
    name: str
    kind: str  # VersionKind value
    round: int | None  # the prefloop round that produced it; 0 for a base model, None for external text


# --- report.json, as dataclasses ----------------------------------------------------------------------


@dataclass
class Counts:
    """Judgment-level figures of one annotator on one model pair (one judgment per item each)."""

    n: int
    wins: int
    losses: int
    ties: int
    both_bad: int
    win_rate: float | None
    ci95: list[float | None]
    p_value: float


@dataclass
class PairResult:
    """One model against another: item-level statistics first, per-judgment counts beside them."""

    model: str
    baseline: str
    oriented_by: str  # "round": newer prefloop round against older; "rating": higher Bradley-Terry rating
    items: int
    item_wins: int  # items the model won by majority of the judgments on it
    item_losses: int
    item_ties: int
    win_rate: float | None  # mean over items of each item's score (ties and both-bad ½)
    ci95: list[float | None]  # Wilson on the items' mean scores
    p_value: float  # sign test of item_wins vs item_losses
    test: str
    n: int  # judgments
    wins: int
    losses: int
    ties: int
    both_bad: int
    judgment_win_rate: float | None  # per judgment, for reference: not the unit of inference
    items_needed: int | None
    conclusion: str
    verdict: str
    annotators: dict[str, Counts]


@dataclass
class Majority:
    wins: int
    losses: int
    ties: int
    win_rate: float | None  # (wins + ties/2) / items


@dataclass
class ModelStanding:
    """One model against all others it met: the table multi-model data is published with."""

    model: str
    rating: float | None
    round: int | None
    opponents: int
    items: int  # (prompt, opponent) items
    n: int  # judgments
    wins: int
    losses: int
    ties: int  # ties and both-bad
    win_rate: float | None  # per judgment, ties ½
    item_win_rate: float | None  # mean of the items' mean scores
    ci95: list[float | None]  # Wilson on the items' mean scores
    item_majority: Majority


@dataclass
class Rating:
    rank: int
    rating: float
    ci95: list[float]
    round: int | None
    battles: int
    items: int


@dataclass
class Bias:
    """A bias estimated with the models' strengths held fixed (a covariate in the Bradley-Terry fit)."""

    n: int  # decisive judgments it is measured on
    k: int  # of which the left (longer) candidate won
    share: float | None  # raw k / n: confounded with strength when sides or lengths follow the model
    items: int
    separable: bool  # whether the design lets the bias be told apart from model strength
    adjusted_share: float | None  # P(left/longer wins) between two equally strong candidates
    ci95: list[float | None]  # of adjusted_share, from the per-item (cluster-robust) standard error
    p_value: float | None  # Wald test of no bias, per-item standard error
    balance: list[str]  # sentences about models always (or mostly) on one side
    statement: str
    annotators: dict[str, Bias] = field(default_factory=dict)


@dataclass
class CohenPair:
    annotators: list[str]
    n: int
    percent_agreement: float | None
    kappa: float | None


@dataclass
class Fleiss:
    kappa: float | None
    items: int
    raters_per_item: int


@dataclass
class Alpha:
    alpha: float | None
    items: int


@dataclass
class Agreement:
    items: int
    orientation: str
    statement: str
    cohen_kappa: list[CohenPair] = field(default_factory=list)
    fleiss_kappa: Fleiss | None = None
    krippendorff_alpha: Alpha | None = None


@dataclass
class Group:
    """Everything computed from one annotator kind's judgments."""

    judgments: int
    items: int
    annotators: list[str]
    served_by_prefloop: bool  # False: imported records, whose blindness and sides prefloop did not check
    method: list[str]
    headline: str
    headline_rule: str
    comparisons: list[PairResult]
    per_model: list[ModelStanding]
    bradley_terry: dict[str, Rating]  # sorted by rating, highest first
    bradley_terry_scale: str
    position_bias: Bias
    length_bias: Bias
    agreement: Agreement


@dataclass
class PowerLine:
    model: str
    baseline: str
    items: int
    win_rate: float | None
    items_needed: int | None
    conclusion: str


@dataclass(frozen=True)
class ModelHealth(Health):
    flags: tuple[str, ...] = ()


@dataclass
class ReportData:
    """report.json: the headline kind's figures at the top level, every kind under ``groups``."""

    headline: str
    headline_rule: str
    annotator_kind: str
    unit: str
    items: int
    flags: list[str]
    comparisons: list[PairResult]
    per_model: list[ModelStanding]
    bradley_terry: dict[str, Rating]
    bradley_terry_scale: str
    position_bias: Bias
    length_bias: Bias
    agreement: Agreement
    power: list[PowerLine]
    method: list[str]
    health: dict[str, ModelHealth]
    groups: dict[str, Group]
    anchor: str | None
    test: str
    excluded: list[str]  # one sentence per kind of judgment left out (e.g. on train-split prompts)
    generated_at: str = ""

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values (tuples become lists), exactly what report.json holds."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


# --- small helpers ------------------------------------------------------------------------------------


def _r(x: float | None, digits: int = 3) -> float | None:
    return None if x is None or math.isnan(x) else round(x, digits)


def _p(p: float) -> float:
    """A p-value to 3 decimals, or 3 significant digits below 0.001 (so it never prints as 0)."""
    return round(p, 3) if p >= 0.001 else float(f"{p:.3g}")


def _ci(ci: tuple[float, float], n: int) -> list[float | None]:
    return [_r(ci[0]), _r(ci[1])] if n else [None, None]


def canonical_first_is_a(model_a: str, text_a: str, model_b: str, text_b: str) -> bool:
    """The canonical first candidate of a pair: lower (model version name, text), not the lower id, so an
    agreement figure does not change when the same judgments are stored in another order."""
    return (model_a, text_a) <= (model_b, text_b)


def _first_is_a(rec: JudgmentRecord) -> bool:
    return canonical_first_is_a(rec.model_a, rec.text_a, rec.model_b, rec.text_b)


def oriented_label(rec: JudgmentRecord) -> str:
    """ "first" / "second" (the canonical candidates, see ``_first_is_a``), "tie" or "both_bad"."""
    if rec.choice in ("tie", "both_bad"):
        return rec.choice
    return "first" if (rec.choice == "a") == _first_is_a(rec) else "second"


def _outcome(rec: JudgmentRecord, model: str) -> str:
    """The judgment from ``model``'s side: "win", "loss", "tie" or "both_bad"."""
    if rec.choice in ("tie", "both_bad"):
        return rec.choice
    chosen = rec.model_a if rec.choice == "a" else rec.model_b
    return "win" if chosen == model else "loss"


def _counts(outcomes: Counter) -> HeadToHead:
    return HeadToHead(outcomes["win"], outcomes["loss"], outcomes["tie"], outcomes["both_bad"])


def counts_summary(h2h: HeadToHead) -> Counts:
    return Counts(
        n=h2h.n,
        wins=h2h.wins,
        losses=h2h.losses,
        ties=h2h.ties,
        both_bad=h2h.both_bad,
        win_rate=_r(h2h.win_rate),
        ci95=_ci(h2h.ci95, h2h.n),
        p_value=_p(h2h.p_value),
    )


# --- verdicts -----------------------------------------------------------------------------------------


def verdict(model: str, baseline: str, items: ItemOutcomes) -> tuple[str, int | None]:
    """What the items say, in words, and how many more items would settle it (None: no number would)."""
    if items.items == 0:
        return "no eval judgments yet.", None
    if items.p_value < ALPHA and items.wins != items.losses:
        winner, loser = (model, baseline) if items.wins > items.losses else (baseline, model)
        return f"{winner} is preferred over {loser}.", 0
    needed = judgments_needed(items.win_rate, items.items, alpha=ALPHA)
    if needed is None:
        return (
            "no preference either way; at an observed 50% no number of further items would show a "
            "difference, only narrow the interval.",
            None,
        )
    if needed == 0:
        return (
            f"not significant, although {items.items} items would usually suffice at this win rate with "
            "80% power; the true difference is probably smaller than observed.",
            0,
        )
    if needed > IMPRACTICAL * items.items:
        return (
            f"no meaningful preference: at the observed {items.win_rate:.1%} about {needed:,} more eval "
            "items would be needed to tell it from 50% with 80% power, so treat the two as equal.",
            needed,
        )
    return (
        f"too few items to conclude. If the true win rate is {items.win_rate:.0%}, about {needed:,} more "
        "eval items (prompts judged for this pair) are needed to tell it from 50% with 80% power.",
        needed,
    )


def conclusion(model: str, baseline: str, items: ItemOutcomes, judgments: int) -> tuple[str, int | None]:
    """The observed figures and the verdict in one sentence, for the report body."""
    words, needed = verdict(model, baseline, items)
    if items.items == 0:
        return f"{model} vs {baseline}: {words}", needed
    lo, hi = items.ci95
    of = f"{items.items} items" + ("" if judgments == items.items else f" ({judgments} judgments)")
    return (
        f"{model} won {items.win_rate:.0%} of {of} against {baseline} "
        f"(95% interval {lo:.0%}-{hi:.0%}; sign test on item majorities p = {items.p_value:.2g}): {words}",
        needed,
    )


# --- model pairs, per model, Bradley-Terry ------------------------------------------------------------


def battles(records: Sequence[JudgmentRecord]) -> tuple[list[tuple[str, str, float]], list[str]]:
    """Chatbot Arena battles (first model, second model, score of the first; ties and both-bad ½) between
    different models, canonically oriented, and each battle's item key (its prompt)."""
    fights, items = [], []
    for rec in records:
        if rec.model_a == rec.model_b:
            continue
        first, second = (rec.model_a, rec.model_b) if _first_is_a(rec) else (rec.model_b, rec.model_a)
        fights.append((first, second, SCORE[_outcome(rec, first)]))
        items.append(rec.prompt_key)
    return fights, items


def bradley_terry_summary(
    records: Sequence[JudgmentRecord],
    versions: dict[str, VersionInfo],
    anchor: str | None,
    rounds: int,
    seed: int,
) -> tuple[dict[str, Rating], str]:
    """Ratings sorted highest first, with a percentile bootstrap over items, and what the scale fixes."""
    fights, items = battles(records)
    if not fights:
        return {}, "No battles between different model versions."
    played = {m for a, b, _ in fights for m in (a, b)}
    fixed = anchor if anchor in played else None
    ratings = bradley_terry(fights, anchor=fixed)
    intervals = bootstrap_bradley_terry(fights, rounds=rounds, seed=seed, anchor=fixed, clusters=items)
    count = Counter(m for a, b, _ in fights for m in (a, b))
    item_count = {
        m: len({i for (a, b, _), i in zip(fights, items, strict=True) if m in (a, b)}) for m in played
    }
    names = sorted(ratings, key=lambda m: (-round(ratings[m], 6), m))
    out = {
        name: Rating(
            rank=rank,
            rating=round(ratings[name], 1),
            ci95=[round(intervals[name][0], 1), round(intervals[name][1], 1)],
            round=versions[name].round if name in versions else None,
            battles=count[name],
            items=item_count[name],
        )
        for rank, name in enumerate(names, start=1)
    }
    scale = (
        f"Elo scale (400 points = 10:1 odds); {fixed} fixed at 1000"
        if fixed
        else "Elo scale (400 points = 10:1 odds); no base model among these versions, so the ratings are "
        "centred on a mean of 1000 and only their differences mean anything"
    )
    return out, scale + f"; 95% percentile bootstrap over {len(set(items))} prompts (items resampled whole)."


def orient_pair(
    x: str, y: str, versions: dict[str, VersionInfo], ratings: dict[str, Rating]
) -> tuple[str, str, str]:
    """(model, baseline, rule): two prefloop rounds face newer against older; anything else, the higher
    Bradley-Terry rating against the lower (then by name), so no storage order decides it."""
    rx, ry = (versions[m].round if m in versions else None for m in (x, y))
    if rx is not None and ry is not None and rx != ry:
        return (x, y, "round") if rx > ry else (y, x, "round")
    key = {m: (ratings[m].rating if m in ratings else 0.0, m) for m in (x, y)}
    return (x, y, "rating") if key[x] > key[y] else (y, x, "rating")


def comparisons(
    records: Sequence[JudgmentRecord], versions: dict[str, VersionInfo], ratings: dict[str, Rating]
) -> list[PairResult]:
    """Each pair of versions that met in eval pairs: item-level figures, judgment counts, per annotator."""
    by_pair: dict[tuple[str, str, str], list[JudgmentRecord]] = defaultdict(list)
    for rec in records:
        if rec.model_a != rec.model_b:
            by_pair[orient_pair(rec.model_a, rec.model_b, versions, ratings)].append(rec)
    out = []
    for (model, baseline, rule), recs in by_pair.items():
        outcomes = [_outcome(r, model) for r in recs]
        items = item_outcomes([(r.prompt_key, SCORE[o]) for r, o in zip(recs, outcomes, strict=True)])
        h2h = _counts(Counter(outcomes))
        per_annotator: dict[str, Counter] = defaultdict(Counter)
        for rec, outcome in zip(recs, outcomes, strict=True):
            per_annotator[rec.annotator][outcome] += 1
        words, needed = conclusion(model, baseline, items, h2h.n)
        out.append(
            PairResult(
                model=model,
                baseline=baseline,
                oriented_by=rule,
                items=items.items,
                item_wins=items.wins,
                item_losses=items.losses,
                item_ties=items.ties,
                win_rate=_r(items.win_rate),
                ci95=_ci(items.ci95, items.items),
                p_value=_p(items.p_value),
                test=SIGN_TEST,
                n=h2h.n,
                wins=h2h.wins,
                losses=h2h.losses,
                ties=h2h.ties,
                both_bad=h2h.both_bad,
                judgment_win_rate=_r(h2h.win_rate),
                items_needed=needed,
                conclusion=words,
                verdict=verdict(model, baseline, items)[0],
                annotators={name: counts_summary(_counts(c)) for name, c in sorted(per_annotator.items())},
            )
        )

    def order(c: PairResult) -> tuple:
        if c.oriented_by == "round":
            return (0, versions[c.model].round, versions[c.baseline].round, "", "")
        rating = {m: ratings[m].rating if m in ratings else 0.0 for m in (c.model, c.baseline)}
        return (1, -rating[c.model], -rating[c.baseline], c.model, c.baseline)

    return sorted(out, key=order)


def per_model(
    records: Sequence[JudgmentRecord], versions: dict[str, VersionInfo], ratings: dict[str, Rating]
) -> list[ModelStanding]:
    """Each model against all the others it met, ties ½; items are (prompt, opponent)."""
    judged: dict[str, list[tuple[tuple[str, str], str]]] = defaultdict(list)
    for rec in records:
        if rec.model_a == rec.model_b:
            continue
        for model, other in ((rec.model_a, rec.model_b), (rec.model_b, rec.model_a)):
            judged[model].append(((rec.prompt_key, other), _outcome(rec, model)))
    out = []
    for model, rows in judged.items():
        outcomes = Counter(o for _, o in rows)
        items = item_outcomes([(key, SCORE[o]) for key, o in rows])
        h2h = _counts(outcomes)
        out.append(
            ModelStanding(
                model=model,
                rating=ratings[model].rating if model in ratings else None,
                round=versions[model].round if model in versions else None,
                opponents=len({other for (_, other), _ in rows}),
                items=items.items,
                n=h2h.n,
                wins=h2h.wins,
                losses=h2h.losses,
                ties=h2h.ties + h2h.both_bad,
                win_rate=_r(h2h.win_rate),
                item_win_rate=_r(items.win_rate),
                ci95=_ci(items.ci95, items.items),
                item_majority=Majority(
                    items.wins, items.losses, items.ties, _r((items.wins + 0.5 * items.ties) / items.items)
                ),
            )
        )
    return sorted(out, key=lambda s: (-(s.rating or 0.0), s.model))


# --- biases -------------------------------------------------------------------------------------------

BiasRow = tuple[
    str, str, float, float, str
]  # (model on the covariate's side, other, 1 if it won, covariate, item)


def _bias(rows: Sequence[BiasRow], what: str, balance: list[str], blocked: list[str]) -> Bias:
    n, k = len(rows), int(sum(r[2] for r in rows))
    raw = f"raw: the {what} won {k} of {n} decisive judgments" + (f" ({k / n:.0%})" if n else "")
    items = len({r[4] for r in rows})
    fit: CovariateFit | None = (
        bradley_terry_covariate([r[:3] for r in rows], [r[3] for r in rows], [r[4] for r in rows])
        if rows
        else None
    )
    exact = fit is not None and fit.separated
    if exact:  # every decisive judgment went one way: only the exact test on the raw share is meaningful
        lo, hi = wilson_interval(k, n)
        share, ci, p = k / n, (lo, hi), binomial_p(k, n)
    elif fit is not None:
        share, ci, p = fit.share, fit.ci95, fit.p_value
    if not rows:
        statement = f"Not measurable: no decisive judgment where the {what} can be told."
    elif fit is None:
        reason = "; ".join(blocked) if blocked else "the design does not let it be told from model strength"
        statement = f"Not separable: {reason}. ({raw}.)"
    else:
        words = "Biased" if p < ALPHA else "No evidence of bias"
        how = (
            "every decisive judgment went one way, so the strength-adjusted fit is at its boundary; exact "
            f"binomial test of the raw share: the {what} won {share:.0%} [{ci[0]:.0%}, {ci[1]:.0%}]"
            if exact
            else f"with the models' strengths held fixed, the {what} wins {share:.0%} [{ci[0]:.0%}, "
            f"{ci[1]:.0%}] of decisive judgments between equally strong candidates"
        )
        statement = f"{words}: {how} (p = {p:.2g}, {items} items; {raw})."
    return Bias(
        n=n,
        k=k,
        share=_r(k / n) if n else None,
        items=items,
        separable=fit is not None,
        adjusted_share=_r(share) if fit else None,
        ci95=[_r(ci[0]), _r(ci[1])] if fit else [None, None],
        p_value=_p(p) if fit else None,
        balance=balance,
        statement=statement,
    )


def _sides(rows: Sequence[BiasRow], what: str) -> tuple[list[str], list[str]]:
    """Per model, the share of its battles it was on the covariate's side: notes for lopsided ones, and the
    sentences that explain a bias that cannot be separated (a model always on one side)."""
    on, total = Counter(), Counter()
    for side, other, _, value, _ in rows:
        if side == other:
            continue
        total[side] += 1
        total[other] += 1
        on[side if value > 0 else other] += 1
    shares = {model: on[model] / total[model] for model in sorted(total)}
    always = [m for m, s in shares.items() if s == 1.0] or [m for m, s in shares.items() if s == 0.0]
    blocked = [
        f"{m} was {what} in {shares[m]:.0%} of its {total[m]} battles: the bias cannot be separated from "
        f"{m}'s strength"
        for m in always
    ]
    notes = [
        f"{m} was {what} in {s:.0%} of its {total[m]} battles"
        for m, s in shares.items()
        if m not in always and not 1 - LOPSIDED <= s <= LOPSIDED
    ]
    return notes + blocked, blocked


def _position_rows(records: Sequence[JudgmentRecord]) -> list[BiasRow]:
    rows = []
    for rec in records:
        if rec.choice in ("a", "b") and rec.left in ("a", "b"):
            left, right = (rec.model_a, rec.model_b) if rec.left == "a" else (rec.model_b, rec.model_a)
            rows.append((left, right, float(rec.choice == rec.left), 1.0, rec.prompt_key))
    return rows


def _length_rows(records: Sequence[JudgmentRecord]) -> list[BiasRow]:
    rows = []
    for rec in records:
        len_a, len_b = len(rec.text_a.strip()), len(rec.text_b.strip())
        if rec.choice in ("a", "b") and len_a != len_b:
            longer, shorter = (rec.model_a, rec.model_b) if len_a > len_b else (rec.model_b, rec.model_a)
            rows.append((longer, shorter, float((rec.choice == "a") == (len_a > len_b)), 1.0, rec.prompt_key))
    return rows


def _bias_with_annotators(
    records: Sequence[JudgmentRecord],
    rows_of: Callable[[Sequence[JudgmentRecord]], list[BiasRow]],
    what: str,
    side_words: str,
) -> Bias:
    def one(recs: Sequence[JudgmentRecord]) -> Bias:
        rows = rows_of(recs)
        notes, blocked = _sides(rows, side_words)
        return _bias(rows, what, notes, blocked)

    overall = one(records)
    by_annotator: dict[str, list[JudgmentRecord]] = defaultdict(list)
    for rec in records:
        by_annotator[rec.annotator].append(rec)
    overall.annotators = {name: bias for name, recs in sorted(by_annotator.items()) if (bias := one(recs)).n}
    return overall


def position_bias(records: Sequence[JudgmentRecord]) -> Bias:
    """Does the side shown on the left win more often than strength explains?"""
    return _bias_with_annotators(records, _position_rows, "left side", "on the left")


def length_bias(records: Sequence[JudgmentRecord]) -> Bias:
    """Does the longer of two candidates win more often than strength explains?"""
    return _bias_with_annotators(records, _length_rows, "longer candidate", "the longer one")


# --- agreement ----------------------------------------------------------------------------------------

ORIENTATION = (
    "labels name the pair's candidate whose (model version, text) sorts first or second, or tie / both "
    "bad: the same whatever order the rows were stored in"
)


def agreement(records: Sequence[JudgmentRecord]) -> Agreement:
    """Inter-annotator agreement on eval pairs judged by more than one annotator, oriented labels."""
    labels: dict[int, dict[str, str]] = defaultdict(dict)
    for rec in records:
        labels[rec.comparison_id][rec.annotator] = oriented_label(rec)
    shared = {cid: by for cid, by in labels.items() if len(by) > 1}
    if not shared:
        return Agreement(0, ORIENTATION, "No eval pair was judged by more than one annotator.")
    cohen = []
    for (first, second), (xs, ys) in sorted(agreement_pairs(shared).items()):
        same = sum(x == y for x, y in zip(xs, ys, strict=True))
        cohen.append(CohenPair([first, second], len(xs), _r(same / len(xs)), _r(cohen_kappa(xs, ys))))
    # Fleiss' κ needs the same number of raters per item: the most common count (the larger on a tie)
    tally = Counter(len(by) for by in shared.values())
    raters = max(tally, key=lambda m: (tally[m], m))
    categories = sorted({c for by in shared.values() for c in by.values()})
    table = [[list(by.values()).count(c) for c in categories] for by in shared.values() if len(by) == raters]
    alpha = krippendorff_alpha_nominal([list(by.values()) for by in shared.values()])
    return Agreement(
        items=len(shared),
        orientation=ORIENTATION,
        statement=agreement_statement(alpha, len(shared)),
        cohen_kappa=cohen,
        fleiss_kappa=Fleiss(_r(fleiss_kappa(table)), len(table), raters),
        krippendorff_alpha=Alpha(_r(alpha), len(shared)),
    )


def agreement_statement(alpha: float, items: int) -> str:
    """Krippendorff's rule of thumb: α ≥ 0.8 reliable, ≥ 0.667 tentative, below that unreliable."""
    if math.isnan(alpha):
        return f"Agreement is undefined on {items} shared pairs (every annotator gave the same label)."
    level = "reliable" if alpha >= 0.8 else "tentative" if alpha >= 0.667 else "low: labels are noisy"
    return f"Krippendorff's alpha = {alpha:.2f} on {items} shared pairs ({level})."


# --- one group, the headline, the whole report --------------------------------------------------------

SERVED_METHOD = (
    "prefloop-served eval pairs: held-out (eval-split) prompts, model names hidden from the annotator, "
    "sides randomised per judgment and recorded; current judgments only (a revision supersedes, skips "
    "left out)."
)
IMPORTED_METHOD = (
    "Imported records (prefloop judgments import): prefloop did not serve these pairs, so blindness, side "
    "randomisation and prompt hold-out were not checked; the left side is the file's model_a; current "
    "judgments only."
)
ROUND_RULE = "the newest prefloop round against base (prefloop trained these versions)"
LEADERBOARD_RULE = (
    "no prefloop-trained round met base or an earlier round here: the Bradley-Terry leaderboard"
)


def headline(
    kind: str,
    comps: Sequence[PairResult],
    ratings: dict[str, Rating],
    anchor: str | None,
    versions: dict[str, VersionInfo],
) -> tuple[str, str]:
    """One line for the terminal and the rule that chose it."""
    if not comps:
        return "No eval judgments yet: label eval pairs in the app (or import judgments), then re-run.", ""
    lineage = [c for c in comps if c.oriented_by == "round"]
    if lineage:
        newest = max(versions[c.model].round for c in lineage)
        pick = max(
            (c for c in lineage if versions[c.model].round == newest),
            key=lambda c: (c.baseline == anchor, -versions[c.baseline].round),
        )
        rule = ROUND_RULE
    else:
        top = list(ratings)[:2]
        pick = next(c for c in comps if {c.model, c.baseline} == set(top)) if len(top) == 2 else comps[0]
        rule = LEADERBOARD_RULE
    lo, hi = pick.ci95
    line = (
        f"{pick.model} vs {pick.baseline} ({kind} annotators): win rate {pick.win_rate:.2f} [{lo:.3f}, "
        f"{hi:.3f}] over {pick.items} items"
        + ("" if pick.n == pick.items else f" ({pick.n} judgments)")
        + f", sign test p = {pick.p_value:.3g}: {pick.verdict}"
    )
    if rule == LEADERBOARD_RULE:
        board = ", ".join(f"{r.rank}. {name} {r.rating:.0f}" for name, r in list(ratings.items())[:5])
        more = "" if len(ratings) <= 5 else f" (+{len(ratings) - 5} more)"
        line = f"Leaderboard ({len(ratings)} models): {board}{more}. Top two: {line}"
    return line, rule


def group_analysis(
    records: Sequence[JudgmentRecord],
    versions: dict[str, VersionInfo],
    anchor: str | None,
    bounds: ReportConfig,
    kind: str,
) -> Group:
    ratings, scale = bradley_terry_summary(records, versions, anchor, bounds.bootstrap_rounds, bounds.seed)
    comps = comparisons(records, versions, ratings)
    line, rule = headline(kind, comps, ratings, anchor, versions)
    served = kind != "imported"
    return Group(
        judgments=len(records),
        items=len({(r.prompt_key, frozenset((r.model_a, r.model_b))) for r in records}),
        annotators=sorted({r.annotator for r in records}),
        served_by_prefloop=served,
        method=[SERVED_METHOD if served else IMPORTED_METHOD],
        headline=line,
        headline_rule=rule,
        comparisons=comps,
        per_model=per_model(records, versions, ratings),
        bradley_terry=ratings,
        bradley_terry_scale=scale,
        position_bias=position_bias(records),
        length_bias=length_bias(records),
        agreement=agreement(records),
    )


def _version_order(name: str, versions: dict[str, VersionInfo], anchor: str | None) -> tuple:
    info = versions.get(name)
    rnd = info.round if info else None
    return (name != anchor, rnd is None, rnd or 0, name)


def health_summary(
    health: dict[str, Health], versions: dict[str, VersionInfo], anchor: str | None, bounds: ReportConfig
) -> tuple[dict[str, ModelHealth], list[str]]:
    """Health figures of every model (base first) and the flag sentences for the top of the report."""
    base = health.get(anchor) if anchor else None
    out: dict[str, ModelHealth] = {}
    all_flags: list[str] = []
    for name in sorted(health, key=lambda m: _version_order(m, versions, anchor)):
        found = flags(health[name], None if name == anchor else base, bounds, model=name)
        out[name] = ModelHealth(**dataclasses.asdict(health[name]), flags=tuple(found))
        all_flags.extend(found)
    return out, all_flags


def analyse(
    records: Sequence[JudgmentRecord],
    versions: dict[str, VersionInfo],
    health: dict[str, Health],
    bounds: ReportConfig,
    excluded: Sequence[str] = (),
) -> ReportData:
    """The whole report.json: the headline kind's figures at the top level, every kind under "groups"."""
    anchor = min((v.name for v in versions.values() if v.kind == "base"), default=None)
    by_kind: dict[str, list[JudgmentRecord]] = defaultdict(list)
    for rec in records:
        by_kind[rec.annotator_kind].append(rec)
    kinds = [k for k in KIND_ORDER if k in by_kind] + sorted(set(by_kind) - set(KIND_ORDER))
    groups = {kind: group_analysis(by_kind[kind], versions, anchor, bounds, kind) for kind in kinds}
    primary = kinds[0] if kinds else "human"
    top = groups.get(primary) or group_analysis([], versions, anchor, bounds, primary)
    health_out, health_flags = health_summary(health, versions, anchor, bounds)
    return ReportData(
        headline=top.headline,
        headline_rule=top.headline_rule,
        annotator_kind=primary,
        unit=UNIT,
        items=top.items,
        flags=health_flags,
        comparisons=top.comparisons,
        per_model=top.per_model,
        bradley_terry=top.bradley_terry,
        bradley_terry_scale=top.bradley_terry_scale,
        position_bias=top.position_bias,
        length_bias=top.length_bias,
        agreement=top.agreement,
        power=[
            PowerLine(c.model, c.baseline, c.items, c.win_rate, c.items_needed, c.conclusion)
            for c in top.comparisons
        ],
        method=top.method,
        health=health_out,
        groups=groups,
        anchor=anchor,
        test=SIGN_TEST,
        excluded=list(excluded),
    )
