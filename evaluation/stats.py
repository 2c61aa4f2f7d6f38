"""Pure statistics for head-to-head evaluation: no I/O, no database, cheap to import.

Conventions (shared with the report, the dashboard and report.json):

- win rate counts a tie (and a "both bad") as half a win, as AlpacaEval and MT-Bench do;
- intervals are Wilson score intervals, which stay inside [0, 1] and behave at small n;
- p-values are exact two-sided binomial tests against 0.5; for wins vs losses that is the sign test
  (ties and both-bad excluded);
- Bradley-Terry ratings are a logistic fit on the Elo scale (400 points = 10:1 odds), ties as ½,
  as Chatbot Arena computes them, anchored so that the ``anchor`` model sits at 1000.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from itertools import combinations
from statistics import NormalDist

import numpy as np

ELO_SCALE = 400.0  # rating points for a 10:1 odds ratio (Elo's convention)
ELO_ANCHOR = 1000.0  # rating given to the anchor model
BT_L2 = 1e-3  # weak Gaussian prior on log-strengths: keeps ratings finite when a model won every battle

Battle = tuple[str, str, float]  # (model_a, model_b, score of model_a: 1 win, 0 loss, 0.5 tie)


def _z(confidence: float) -> float:
    return NormalDist().inv_cdf(1 - (1 - confidence) / 2)


def win_rate(wins: float, losses: float, ties: float = 0) -> float:
    """Share of wins with ties counted as half; NaN when nothing was judged."""
    n = wins + losses + ties
    return (wins + 0.5 * ties) / n if n else math.nan


def wilson_interval(k: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for k successes of n (k may be fractional: ties as ½); (0, 1) when n is 0."""
    if n <= 0:
        return (0.0, 1.0)
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    z = _z(confidence)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def _log_binom_pmf(k: int, n: int, p: float) -> float:
    if p in (0.0, 1.0):
        return 0.0 if k == round(n * p) else -math.inf
    log_comb = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
    return log_comb + k * math.log(p) + (n - k) * math.log1p(-p)


def binomial_p(k: int, n: int, p: float = 0.5) -> float:
    """Exact two-sided binomial test: total probability of outcomes no likelier than k (as scipy's)."""
    if n <= 0:
        return 1.0
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    logs = [_log_binom_pmf(i, n, p) for i in range(n + 1)]
    cutoff = logs[k] + math.log1p(1e-7)  # relative tolerance for ties in probability, as scipy uses
    return min(1.0, math.fsum(math.exp(v) for v in logs if v <= cutoff))


def sign_test_p(wins: int, losses: int) -> float:
    """Exact two-sided sign test of wins vs losses (ties excluded): is one side preferred at all?"""
    return binomial_p(wins, wins + losses, 0.5)


@dataclass(frozen=True)
class HeadToHead:
    """One model against a baseline: counts and the statistics derived from them."""

    wins: int
    losses: int
    ties: int
    both_bad: int

    @property
    def n(self) -> int:
        return self.wins + self.losses + self.ties + self.both_bad

    @property
    def win_rate(self) -> float:
        """Both-bad counts as a tie: neither side was preferred."""
        return win_rate(self.wins, self.losses, self.ties + self.both_bad)

    @property
    def ci95(self) -> tuple[float, float]:
        return wilson_interval(self.wins + 0.5 * (self.ties + self.both_bad), self.n)

    @property
    def p_value(self) -> float:
        """Sign test: wins vs losses only."""
        return sign_test_p(self.wins, self.losses)


def cohen_kappa(x: Sequence[Hashable], y: Sequence[Hashable]) -> float:
    """Cohen's κ of two raters' labels on the same items; NaN when chance agreement is already 1."""
    if len(x) != len(y):
        raise ValueError(f"two raters need the same items, got {len(x)} and {len(y)} labels")
    n = len(x)
    if n == 0:
        return math.nan
    observed = sum(a == b for a, b in zip(x, y, strict=True)) / n
    cx, cy = Counter(x), Counter(y)
    expected = sum(cx[label] * cy[label] for label in cx) / (n * n)
    return (observed - expected) / (1 - expected) if expected < 1 else math.nan


def fleiss_kappa(table: Sequence[Sequence[int]]) -> float:
    """Fleiss' κ from a subjects × categories table of counts (same number of raters per subject)."""
    counts = np.asarray(table, dtype=float)
    if counts.ndim != 2 or counts.shape[0] == 0:
        return math.nan
    raters = counts.sum(axis=1)
    if not np.allclose(raters, raters[0]) or raters[0] < 2:
        raise ValueError("Fleiss' kappa needs the same number (>= 2) of ratings for every subject")
    m = raters[0]
    p_cat = counts.sum(axis=0) / counts.sum()
    p_subject = ((counts * counts).sum(axis=1) - m) / (m * (m - 1))
    p_bar, p_e = p_subject.mean(), float((p_cat * p_cat).sum())
    return float((p_bar - p_e) / (1 - p_e)) if p_e < 1 else math.nan


def krippendorff_alpha_nominal(units: Sequence[Sequence[Hashable]]) -> float:
    """Krippendorff's α for nominal labels; each unit lists the labels it got (any number of raters).

    Units with fewer than two labels carry no agreement information and are dropped, so pairs judged by
    different numbers of annotators can be pooled. NaN when every label is the same (α undefined).
    """
    coincidence: Counter[tuple[Hashable, Hashable]] = Counter()
    for unit in units:
        m = len(unit)
        if m < 2:
            continue
        counts = Counter(unit)
        for c, nc in counts.items():
            for k, nk in counts.items():
                pairs = nc * (nc - 1) if c == k else nc * nk
                coincidence[(c, k)] += pairs / (m - 1)
    totals: Counter[Hashable] = Counter()
    for (c, _k), value in coincidence.items():
        totals[c] += value
    n = sum(totals.values())
    disagree_observed = sum(v for (c, k), v in coincidence.items() if c != k)
    disagree_expected = sum(totals[c] * totals[k] for c in totals for k in totals if c != k)
    if n <= 1 or disagree_expected == 0:
        return math.nan
    return 1 - (n - 1) * disagree_observed / disagree_expected


def _fit_log_strengths(
    wins: np.ndarray, games: np.ndarray, pairs: np.ndarray, n_models: int, iterations: int = 100
) -> np.ndarray:
    """Newton's method on the penalised Bradley-Terry log-likelihood (natural-log strengths).

    ``pairs`` holds (i, j) model indices; ``wins`` the score of i and ``games`` the battles per pair.
    The tiny L2 prior makes the Hessian positive definite, so Newton converges even under separation.
    """
    beta = np.zeros(n_models)
    i, j = pairs[:, 0], pairs[:, 1]
    for _ in range(iterations):
        prob = 1.0 / (1.0 + np.exp(beta[j] - beta[i]))
        resid = wins - games * prob
        grad = np.zeros(n_models)
        np.add.at(grad, i, resid)
        np.add.at(grad, j, -resid)
        grad -= BT_L2 * beta
        weight = games * prob * (1 - prob)
        hess = np.zeros((n_models, n_models))
        np.add.at(hess, (i, i), weight)
        np.add.at(hess, (j, j), weight)
        np.add.at(hess, (i, j), -weight)
        np.add.at(hess, (j, i), -weight)
        hess += BT_L2 * np.eye(n_models)
        step = np.linalg.solve(hess, grad)
        beta += step
        if np.max(np.abs(step)) < 1e-10:
            break
    return beta


def _index_battles(battles: Sequence[Battle]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Model names, then per battle its (i, j) indices and the score of i."""
    names = sorted({m for a, b, _ in battles for m in (a, b)})
    index = {name: k for k, name in enumerate(names)}
    pairs = np.array([(index[a], index[b]) for a, b, _ in battles], dtype=int).reshape(-1, 2)
    scores = np.array([s for _, _, s in battles], dtype=float)
    if np.any((scores < 0) | (scores > 1)):
        raise ValueError("a battle's score is 1 (model_a won), 0 (model_b won) or 0.5 (tie)")
    return names, pairs, scores


def _ratings(names: list[str], beta: np.ndarray, anchor: str) -> dict[str, float]:
    """Elo scale; the anchor at ELO_ANCHOR, or the mean there when the anchor never played."""
    elo = beta * ELO_SCALE / math.log(10)
    shift = elo[names.index(anchor)] if anchor in names else elo.mean()
    return {name: float(ELO_ANCHOR + e - shift) for name, e in zip(names, elo, strict=True)}


def _fit(names: list[str], pairs: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Aggregate battles per ordered pair of models, then fit."""
    n = len(names)
    key = pairs[:, 0] * n + pairs[:, 1]
    games = np.bincount(key, weights=weights, minlength=n * n)
    wins = np.bincount(key, weights=weights * scores, minlength=n * n)
    played = np.nonzero(games)[0]
    pair_index = np.stack([played // n, played % n], axis=1)
    return _fit_log_strengths(wins[played], games[played], pair_index, n)


def bradley_terry(battles: Sequence[Battle], anchor: str = "base") -> dict[str, float]:
    """Bradley-Terry ratings (Elo scale) of every model in ``battles``; ``anchor`` sits at 1000."""
    if not battles:
        return {}
    names, pairs, scores = _index_battles(battles)
    return _ratings(names, _fit(names, pairs, scores, np.ones(len(scores))), anchor)


def bootstrap_bradley_terry(
    battles: Sequence[Battle],
    rounds: int = 1000,
    seed: int = 0,
    anchor: str = "base",
    confidence: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap interval of each rating: battles resampled with replacement, refitted."""
    if not battles or rounds < 1:
        return {}
    names, pairs, scores = _index_battles(battles)
    rng = np.random.default_rng(seed)
    samples = np.empty((rounds, len(names)))
    for r in range(rounds):
        weights = rng.multinomial(len(scores), np.full(len(scores), 1 / len(scores))).astype(float)
        fitted = _ratings(names, _fit(names, pairs, scores, weights), anchor)
        samples[r] = [fitted[name] for name in names]
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(samples, [tail, 100 - tail], axis=0)
    return {name: (float(a), float(b)) for name, a, b in zip(names, lo, hi, strict=True)}


def judgments_needed(p_hat: float, n: int, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """How many MORE judgments would tell a true win rate of ``p_hat`` from 0.5 (two-sided, at ``power``).

    Normal approximation on Cohen's h (arcsine effect size), as statsmodels' NormalIndPower does for one
    sample. 0 when n already suffices; None when p_hat is 0.5 (no sample size can tell it from 0.5).
    """
    h = abs(2 * math.asin(math.sqrt(p_hat)) - 2 * math.asin(math.sqrt(0.5)))
    if h == 0:
        return None
    total = ((_z(1 - alpha) + NormalDist().inv_cdf(power)) / h) ** 2
    return max(0, math.ceil(total) - n)


def agreement_pairs(labels: dict[Hashable, dict[Hashable, Hashable]]) -> dict[tuple, tuple[list, list]]:
    """Per pair of raters, their labels on the items both judged.

    ``{item: {rater: label}}`` → ``{(rater1, rater2): (labels1, labels2)}``, aligned item by item.
    """
    out: dict[tuple, tuple[list, list]] = defaultdict(lambda: ([], []))
    for by_rater in labels.values():
        for r1, r2 in combinations(sorted(by_rater, key=str), 2):
            xs, ys = out[(r1, r2)]
            xs.append(by_rater[r1])
            ys.append(by_rater[r2])
    return dict(out)
