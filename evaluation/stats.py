"""Pure statistics for head-to-head evaluation: no I/O, no database, cheap to import.

Conventions (shared with the report, the dashboard and report.json):

- win rate counts a tie (and a "both bad") as half a win, as AlpacaEval and MT-Bench do;
- intervals are Wilson score intervals, which stay inside [0, 1] and behave at small n;
- p-values are exact two-sided binomial tests against 0.5; for wins vs losses that is the sign test
  (ties and both-bad excluded);
- Bradley-Terry ratings are a logistic fit on the Elo scale (400 points = 10:1 odds), ties as ½,
  as Chatbot Arena computes them, anchored so that the ``anchor`` model sits at 1000 (the mean of all
  ratings sits there when there is no anchor);
- the unit of inference is the *item* (a prompt on which two models met): several judgments of one item
  are not independent, so intervals and tests use per-item figures and bootstraps resample items whole;
- a bias (left side, longer answer) is a covariate in a Bradley-Terry fit, so it is estimated with the
  models' strengths held fixed, with a cluster-robust (per item) standard error.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from itertools import combinations
from statistics import NormalDist

import numpy as np

ELO_SCALE = 400.0  # rating points for a 10:1 odds ratio (Elo's convention)
ELO_ANCHOR = 1000.0  # rating given to the anchor model
BT_L2 = 1e-3  # weak Gaussian prior on log-strengths: keeps ratings finite when a model won every battle
SEPARATED_LOG_ODDS = 5.0  # a covariate effect beyond 150:1 odds is a boundary fit, not an estimate

Battle = tuple[str, str, float]  # (model_a, model_b, score of model_a: 1 win, 0 loss, 0.5 tie)


def _z(confidence: float) -> float:
    return NormalDist().inv_cdf(1 - (1 - confidence) / 2)


def win_rate(wins: float, losses: float, ties: float = 0) -> float:
    """Share of wins with ties counted as half; NaN when nothing was judged."""
    n = wins + losses + ties
    return (wins + 0.5 * ties) / n if n else math.nan


def wilson_interval(k: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for k successes of n (both may be fractional: ties as ½, an effective sample
    size); (0, 1) when n is 0."""
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


def ratio_interval(
    k1: float, n1: float, k2: float, n2: float, confidence: float = 0.95
) -> tuple[float, float]:
    """Interval for the ratio of two independent proportions (k1/n1) / (k2/n2), Katz's log method.

    A zero count gets ½ added to it and its total (Haldane), so an all-or-nothing share still has an
    interval.
    """
    if min(n1, n2) <= 0:
        return (0.0, math.inf)
    if k1 == 0 or k2 == 0:
        k1, n1, k2, n2 = k1 + 0.5, n1 + 0.5, k2 + 0.5, n2 + 0.5
    p1, p2 = k1 / n1, k2 / n2
    log_ratio = math.log(p1 / p2)
    se = math.sqrt((1 - p1) / k1 + (1 - p2) / k2)
    z = _z(confidence)
    return (math.exp(log_ratio - z * se), math.exp(log_ratio + z * se))


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


def _ratings(names: list[str], beta: np.ndarray, anchor: str | None) -> dict[str, float]:
    """Elo scale; the anchor at ELO_ANCHOR, or the mean there when there is no anchor or it never played."""
    elo = beta * ELO_SCALE / math.log(10)
    shift = elo[names.index(anchor)] if anchor is not None and anchor in names else elo.mean()
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


def bradley_terry(battles: Sequence[Battle], anchor: str | None = "base") -> dict[str, float]:
    """Bradley-Terry ratings (Elo scale) of every model in ``battles``; ``anchor`` sits at 1000."""
    if not battles:
        return {}
    names, pairs, scores = _index_battles(battles)
    return _ratings(names, _fit(names, pairs, scores, np.ones(len(scores))), anchor)


def cluster_weights(clusters: Sequence[Hashable], rounds: int, seed: int) -> Iterator[np.ndarray]:
    """Bootstrap weights, one array per round: items drawn with replacement, every judgment of a drawn item
    weighted by how often the item was drawn (a cluster bootstrap). Items are ordered by their key, so the
    draws do not depend on the order the judgments came in."""
    keys = sorted(set(clusters), key=str)
    index = {key: k for k, key in enumerate(keys)}
    member = np.array([index[c] for c in clusters], dtype=int)
    rng = np.random.default_rng(seed)
    for _ in range(rounds):
        yield rng.multinomial(len(keys), np.full(len(keys), 1 / len(keys))).astype(float)[member]


def bootstrap_bradley_terry(
    battles: Sequence[Battle],
    rounds: int = 1000,
    seed: int = 0,
    anchor: str | None = "base",
    confidence: float = 0.95,
    clusters: Sequence[Hashable] | None = None,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap interval of each rating: items (``clusters``, one key per battle; each battle
    its own item when None) resampled with replacement, refitted."""
    if not battles or rounds < 1:
        return {}
    names, pairs, scores = _index_battles(battles)
    draws = cluster_weights(range(len(battles)) if clusters is None else clusters, rounds, seed)
    samples = np.empty((rounds, len(names)))
    for r, weights in enumerate(draws):
        fitted = _ratings(names, _fit(names, pairs, scores, weights), anchor)
        samples[r] = [fitted[name] for name in names]
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(samples, [tail, 100 - tail], axis=0)
    return {name: (float(a), float(b)) for name, a, b in zip(names, lo, hi, strict=True)}


@dataclass(frozen=True)
class ItemOutcomes:
    """One model against another, item by item: each item's mean score (1 win, 0 loss, ties ½).

    The test is an exact sign test of the items the model won by majority against those it lost; the
    interval is Wilson's at the design-effect (Kish) effective sample size of the item means. With one
    judgment per item, or unanimous items, both are the plain per-item figures.
    """

    scores: tuple[float, ...]
    judgments: int = 0  # judgments behind the scores (at least one per item): caps the effective size

    @property
    def items(self) -> int:
        return len(self.scores)

    @property
    def wins(self) -> int:
        return sum(s > 0.5 for s in self.scores)

    @property
    def losses(self) -> int:
        return sum(s < 0.5 for s in self.scores)

    @property
    def ties(self) -> int:
        return self.items - self.wins - self.losses

    @property
    def win_rate(self) -> float:
        return math.fsum(self.scores) / self.items if self.items else math.nan

    @property
    def effective_n(self) -> float:
        """items × p(1-p) / variance of the item means: as many Bernoulli trials as the items' spread is
        worth. Items split between raters vary less than 0/1 items, so they are worth more than one trial
        each, but never more than the judgments behind them."""
        p, n = self.win_rate, self.items
        spread = math.fsum((s - p) ** 2 for s in self.scores) / n if n else 0.0
        if n == 0 or spread == 0:
            return float(n)
        return min(max(self.judgments, n), n * p * (1 - p) / spread) if p * (1 - p) > 0 else float(n)

    @property
    def ci95(self) -> tuple[float, float]:
        n = self.effective_n
        return wilson_interval(min(n, self.win_rate * n), n) if self.items else (0.0, 1.0)

    @property
    def p_value(self) -> float:
        return sign_test_p(self.wins, self.losses)


def item_outcomes(judged: Sequence[tuple[Hashable, float]]) -> ItemOutcomes:
    """``(item key, score)`` per judgment -> each item's mean score (in item-key order)."""
    by_item: dict[Hashable, list[float]] = defaultdict(list)
    for key, score in judged:
        by_item[key].append(score)
    ordered = sorted(by_item.items(), key=lambda kv: str(kv[0]))
    return ItemOutcomes(tuple(math.fsum(v) / len(v) for _, v in ordered), len(judged))


@dataclass(frozen=True)
class CovariateFit:
    """A Bradley-Terry fit with one extra term: log-odds ``effect`` of the covariate at equal strength."""

    effect: float  # natural-log odds per unit of the covariate
    se: float  # cluster-robust standard error (per item), small-sample corrected as statsmodels does
    n: int  # decisive judgments in the fit
    items: int

    @property
    def separated(self) -> bool:
        """At the boundary (e.g. the left side won every decisive judgment): the estimate runs off to the
        prior's limit and the sandwich error collapses, so neither can be trusted."""
        return abs(self.effect) > SEPARATED_LOG_ODDS

    @property
    def share(self) -> float:
        """The probability of the covariate's side winning between two equally strong candidates."""
        return 1 / (1 + math.exp(-self.effect))

    @property
    def ci95(self) -> tuple[float, float]:
        z = _z(0.95)
        return (
            1 / (1 + math.exp(-(self.effect - z * self.se))),
            1 / (1 + math.exp(-(self.effect + z * self.se))),
        )

    @property
    def p_value(self) -> float:
        """Two-sided Wald test of no effect."""
        if self.se == 0 or not math.isfinite(self.se):
            return 1.0
        return 2 * (1 - NormalDist().cdf(abs(self.effect) / self.se))


def covariate_design(battles: Sequence[Battle], covariate: Sequence[float]) -> tuple[list[str], np.ndarray]:
    """Model names and the design matrix: +1 for the first model, -1 for the second (the alphabetically
    first model is the reference and has no column), then the covariate."""
    names = sorted({m for a, b, _ in battles for m in (a, b)})
    index = {name: k - 1 for k, name in enumerate(names)}
    x = np.zeros((len(battles), len(names)))
    for row, ((a, b, _), value) in enumerate(zip(battles, covariate, strict=True)):
        if index[a] >= 0:
            x[row, index[a]] += 1
        if index[b] >= 0:
            x[row, index[b]] -= 1
        x[row, -1] = value
    return names, x


def covariate_separable(battles: Sequence[Battle], covariate: Sequence[float]) -> bool:
    """Whether the covariate's effect can be told from the models' strengths: its column is not a
    combination of the model columns (e.g. not when one of two models always sat on the left)."""
    if not battles:
        return False
    _, x = covariate_design(battles, covariate)
    rows = np.unique(x, axis=0)
    return bool(np.linalg.matrix_rank(rows) > np.linalg.matrix_rank(rows[:, :-1]))


def bradley_terry_covariate(
    battles: Sequence[Battle], covariate: Sequence[float], clusters: Sequence[Hashable]
) -> CovariateFit | None:
    """Logistic fit of decisive battles (score 1 or 0): logit P(first wins) = s_first - s_second + effect *
    covariate, by Newton's method; the standard error is the per-item sandwich with statsmodels' default
    small-sample factor G/(G-1) * (N-1)/(N-K). None when the effect is not separable from strength."""
    keep = [k for k, (_, _, s) in enumerate(battles) if s in (0.0, 1.0)]
    decisive = [battles[k] for k in keep]
    values = [covariate[k] for k in keep]
    if not covariate_separable(decisive, values):
        return None
    _, x = covariate_design(decisive, values)
    y = np.array([s for _, _, s in decisive])
    penalty = np.full(x.shape[1], BT_L2)
    beta = np.zeros(x.shape[1])
    for _ in range(100):
        prob = 1 / (1 + np.exp(-(x @ beta)))
        grad = x.T @ (y - prob) - penalty * beta
        hess = (x * (prob * (1 - prob))[:, None]).T @ x + np.diag(penalty)
        step = np.linalg.solve(hess, grad)
        beta += step
        if np.max(np.abs(step)) < 1e-10:
            break
    prob = 1 / (1 + np.exp(-(x @ beta)))
    bread = np.linalg.inv((x * (prob * (1 - prob))[:, None]).T @ x + np.diag(penalty))
    keys = [clusters[k] for k in keep]
    groups = sorted(set(keys), key=str)
    index = {key: g for g, key in enumerate(groups)}
    per_item = np.zeros((len(groups), x.shape[1]))
    np.add.at(per_item, [index[k] for k in keys], x * (y - prob)[:, None])
    n, k, g = len(y), x.shape[1], len(groups)
    factor = (g / (g - 1)) * ((n - 1) / (n - k)) if g > 1 and n > k else math.inf
    cov = bread @ (per_item.T @ per_item) @ bread * factor
    return CovariateFit(float(beta[-1]), float(math.sqrt(max(cov[-1, -1], 0.0))), n, g)


def judgments_needed(p_hat: float, n: int, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """How many MORE items (or judgments, one per item) would tell a true win rate of ``p_hat`` from 0.5
    (two-sided, at ``power``).

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
