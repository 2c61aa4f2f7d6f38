"""Every statistic against hand-computed values and, where one exists, against scipy/statsmodels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import statsmodels.api as sm
from scipy.stats import binomtest
from statsmodels.discrete.discrete_model import Logit
from statsmodels.stats import inter_rater
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_confint, proportion_effectsize

from evaluation.stats import (
    HeadToHead,
    ItemOutcomes,
    agreement_pairs,
    binomial_p,
    bootstrap_bradley_terry,
    bradley_terry,
    bradley_terry_covariate,
    cohen_kappa,
    covariate_separable,
    fleiss_kappa,
    item_outcomes,
    judgments_needed,
    krippendorff_alpha_nominal,
    ratio_interval,
    sign_test_p,
    wilson_interval,
    win_rate,
)


def test_seed_evaluation_34_of_50():
    """The seed tutorial's result: 34 of 50 → 0.68, Wilson ≈ [0.542, 0.792], sign test p ≈ 0.015."""
    h2h = HeadToHead(wins=34, losses=16, ties=0, both_bad=0)
    assert h2h.n == 50
    assert h2h.win_rate == pytest.approx(0.68)
    lo, hi = h2h.ci95
    assert (round(lo, 3), round(hi, 3)) == (0.542, 0.792)
    assert round(h2h.p_value, 3) == 0.015


def test_win_rate_counts_ties_as_half():
    assert win_rate(3, 1, 2) == pytest.approx(4 / 6)
    assert math.isnan(win_rate(0, 0, 0))
    # both-bad is neither side preferred: a tie for the win rate, left out of the sign test
    h2h = HeadToHead(wins=6, losses=2, ties=1, both_bad=1)
    assert h2h.n == 10
    assert h2h.win_rate == pytest.approx(0.7)
    assert h2h.p_value == pytest.approx(binomtest(6, 8).pvalue)


@pytest.mark.parametrize(("k", "n"), [(0, 10), (1, 10), (34, 50), (50, 50), (7, 23), (123, 300)])
def test_wilson_matches_statsmodels(k, n):
    assert wilson_interval(k, n) == pytest.approx(proportion_confint(k, n, method="wilson"), abs=1e-12)
    assert wilson_interval(k, n, 0.9) == pytest.approx(
        proportion_confint(k, n, alpha=0.1, method="wilson"), abs=1e-12
    )


def test_wilson_hand_values_and_edges():
    # hand: p=0.5, n=4, z²=3.8415 → centre 0.5, half = 1.96*sqrt(0.0625 + 3.8415/64)/(1 + 3.8415/4)
    #       = 1.96 * 0.35003 / 1.96037 = 0.34997
    lo, hi = wilson_interval(2, 4)
    assert lo == pytest.approx(0.5 - 0.34997, abs=1e-4)
    assert hi == pytest.approx(0.5 + 0.34997, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    # fractional k (ties as ½) sits between its integer neighbours
    assert wilson_interval(2, 4)[0] < wilson_interval(2.5, 4)[0] < wilson_interval(3, 4)[0]
    with pytest.raises(ValueError):
        wilson_interval(5, 4)


@pytest.mark.parametrize(
    ("k", "n", "p"), [(34, 50, 0.5), (3, 10, 0.3), (7, 23, 0.5), (0, 5, 0.5), (12, 40, 0.2), (500, 1000, 0.5)]
)
def test_binomial_p_matches_scipy(k, n, p):
    assert binomial_p(k, n, p) == pytest.approx(binomtest(k, n, p).pvalue, rel=1e-9)


def test_sign_test_hand_values():
    # 5 of 5: two-sided 2 * (1/2)^5 = 0.0625; 3 of 6 is the most likely outcome: p = 1
    assert sign_test_p(5, 0) == pytest.approx(0.0625)
    assert sign_test_p(3, 3) == pytest.approx(1.0)
    assert sign_test_p(0, 0) == 1.0
    assert sign_test_p(9, 1) == pytest.approx(22 / 1024)  # 2 * (1 + 10 + ... ) = 2 * 11/1024


def test_cohen_kappa_hand_and_statsmodels():
    # Wikipedia's example: 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no → po 0.7, pe 0.5, κ = 0.4
    x = ["yes"] * 25 + ["no"] * 25
    y = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohen_kappa(x, y) == pytest.approx(0.4)
    rng = np.random.default_rng(1)
    labels = ["a", "b", "tie", "both_bad"]
    x = list(rng.choice(labels, 60))
    y = [v if rng.random() < 0.6 else rng.choice(labels) for v in x]
    table = np.array(
        [[sum(1 for p, q in zip(x, y, strict=True) if p == r and q == c) for c in labels] for r in labels]
    )
    assert cohen_kappa(x, y) == pytest.approx(inter_rater.cohens_kappa(table).kappa, abs=1e-12)
    assert cohen_kappa(x, x) == pytest.approx(1.0)
    assert math.isnan(cohen_kappa(["a", "a"], ["a", "a"]))  # chance agreement 1: κ undefined
    with pytest.raises(ValueError):
        cohen_kappa(["a"], ["a", "b"])


# Fleiss (1971) as reproduced on Wikipedia: 10 subjects, 14 raters, 5 categories → κ = 0.210
FLEISS_TABLE = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]


def test_fleiss_kappa_hand_and_statsmodels():
    assert fleiss_kappa(FLEISS_TABLE) == pytest.approx(0.20993, abs=1e-5)
    assert fleiss_kappa(FLEISS_TABLE) == pytest.approx(inter_rater.fleiss_kappa(np.array(FLEISS_TABLE)))
    two = [[2, 0], [0, 2], [1, 1], [2, 0]]
    assert fleiss_kappa(two) == pytest.approx(inter_rater.fleiss_kappa(np.array(two)))
    with pytest.raises(ValueError):
        fleiss_kappa([[2, 0], [1, 2]])


def test_krippendorff_alpha_reference_example():
    """Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability": 4 observers, 12 units with
    missing values, nominal α = 0.743."""
    observers = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    ]
    units = [[o[u] for o in observers if o[u] is not None] for u in range(12)]
    assert krippendorff_alpha_nominal(units) == pytest.approx(0.743, abs=5e-4)


def test_krippendorff_alpha_equals_fleiss_like_values_on_complete_data():
    # two raters, complete data: α = 1 - (n-1)/n * (1-κ_Scott)... check the perfect and the hand cases
    assert krippendorff_alpha_nominal([["a", "a"], ["b", "b"], ["a", "a"]]) == pytest.approx(1.0)
    # hand: units (a,a) (a,b) (b,b): coincidences o_aa=2, o_ab=o_ba=1, o_bb=2; n=6, n_a=n_b=3
    # α = 1 - (n-1) * 2 / (2 * 3 * 3) = 1 - 5*2/18 = 0.4444
    assert krippendorff_alpha_nominal([["a", "a"], ["a", "b"], ["b", "b"]]) == pytest.approx(4 / 9)
    assert math.isnan(krippendorff_alpha_nominal([["a", "a"], ["a"]]))


def test_bradley_terry_two_models_hand_value():
    # MLE of a single pair: odds 34:16 → 400 * log10(34/16) = 130.94 points above the anchor
    battles = [("round-1", "base", 1.0)] * 34 + [("base", "round-1", 1.0)] * 16
    ratings = bradley_terry(battles)
    assert ratings["base"] == 1000.0
    assert ratings["round-1"] == pytest.approx(1000 + 400 * math.log10(34 / 16), abs=0.1)
    # a tie is half a win for each side: 30 wins + 8 ties of 46 → odds 34:12
    ties = [("round-1", "base", 1.0)] * 30 + [("round-1", "base", 0.0)] * 8 + [("base", "round-1", 0.5)] * 8
    assert bradley_terry(ties)["round-1"] == pytest.approx(1000 + 400 * math.log10(34 / 12), abs=0.1)


def test_bradley_terry_matches_statsmodels_logit():
    """Chatbot Arena's formulation: logistic regression on +1/-1 model indicators, no intercept."""
    rng = np.random.default_rng(7)
    names = ["base", "round-1", "round-2", "other"]
    strength = {"base": 0.0, "round-1": 0.6, "round-2": 1.1, "other": -0.4}
    battles = []
    for _ in range(600):
        a, b = rng.choice(names, 2, replace=False)
        p = 1 / (1 + math.exp(strength[b] - strength[a]))
        battles.append((str(a), str(b), float(rng.random() < p)))
    ratings = bradley_terry(battles, anchor="base")
    others = names[1:]
    design = np.array([[(a == m) - (b == m) for m in others] for a, b, _ in battles], dtype=float)
    outcome = np.array([s for _, _, s in battles])
    fit = Logit(outcome, design).fit(disp=0)
    for m, coef in zip(others, fit.params, strict=True):
        assert ratings[m] == pytest.approx(1000 + 400 * coef / math.log(10), abs=0.5)


def test_bradley_terry_anchor_and_separation():
    # a model that won every battle still gets a finite rating
    ratings = bradley_terry([("x", "base", 1.0)] * 10, anchor="base")
    assert math.isfinite(ratings["x"]) and ratings["x"] > 1500
    # no anchor among the models: the mean sits at 1000
    ratings = bradley_terry([("x", "y", 1.0), ("y", "x", 1.0), ("x", "y", 1.0)], anchor="base")
    assert (ratings["x"] + ratings["y"]) / 2 == pytest.approx(1000)
    assert bradley_terry([]) == {}
    with pytest.raises(ValueError):
        bradley_terry([("x", "y", 2.0)])


def test_bootstrap_bradley_terry_is_seeded_and_covers_the_fit():
    battles = [("round-1", "base", 1.0)] * 34 + [("round-1", "base", 0.0)] * 16
    ci = bootstrap_bradley_terry(battles, rounds=300, seed=3)
    assert ci == bootstrap_bradley_terry(battles, rounds=300, seed=3)
    assert ci != bootstrap_bradley_terry(battles, rounds=300, seed=4)
    assert ci["base"] == (1000.0, 1000.0)  # the anchor is fixed by definition
    lo, hi = ci["round-1"]
    point = bradley_terry(battles)["round-1"]
    assert lo < point < hi
    # the rating interval maps to a win-probability interval close to Wilson's [0.542, 0.792]
    p_lo, p_hi = (1 / (1 + 10 ** (-(r - 1000) / 400)) for r in (lo, hi))
    assert p_lo == pytest.approx(0.542, abs=0.04)
    assert p_hi == pytest.approx(0.792, abs=0.04)


@pytest.mark.parametrize(("p_hat", "n"), [(0.6, 20), (0.68, 50), (0.55, 0), (0.3, 10), (0.52, 100)])
def test_judgments_needed_matches_statsmodels_power(p_hat, n):
    total = NormalIndPower().solve_power(proportion_effectsize(p_hat, 0.5), alpha=0.05, power=0.8, ratio=0)
    assert judgments_needed(p_hat, n) == max(0, math.ceil(total) - n)


def test_judgments_needed_hand_value_and_edges():
    # h = 2 asin(sqrt .6) - π/2 = 0.20136; N = ((1.95996 + 0.84162) / 0.20136)^2 = 193.6 → 194
    assert judgments_needed(0.6, 0) == 194
    assert judgments_needed(0.6, 500) == 0
    assert judgments_needed(0.5, 10) is None


def test_agreement_pairs_aligns_items_judged_by_both():
    labels = {1: {"ann": "a", "bob": "a"}, 2: {"ann": "b", "bob": "a", "cy": "b"}, 3: {"bob": "tie"}}
    pairs = agreement_pairs(labels)
    assert pairs[("ann", "bob")] == (["a", "b"], ["a", "a"])
    assert pairs[("ann", "cy")] == (["b"], ["b"])
    assert pairs[("bob", "cy")] == (["a"], ["b"])
    assert len(pairs) == 3


# --- the item as the unit of inference -------------------------------------------------------------------


def test_items_with_one_judgment_each_are_the_seed_figures():
    items = ItemOutcomes((1.0,) * 34 + (0.0,) * 16)
    assert (items.items, items.wins, items.losses, items.win_rate) == (50, 34, 16, 0.68)
    assert tuple(round(x, 3) for x in items.ci95) == (0.542, 0.792)
    assert items.p_value == pytest.approx(binomtest(34, 50).pvalue) == pytest.approx(0.0153, abs=5e-5)
    assert item_outcomes([("b", 1.0), ("a", 0.0), ("a", 1.0), ("c", 0.5)]).scores == (0.5, 1.0, 0.5)


def _three_raters(items: int, agree: float, seed: int, strength: float = 0.6) -> list[tuple[int, float]]:
    """(item, score of the model) for three raters per item who each give the item's own verdict with
    probability ``agree`` (their other answers are the opposite), the item's verdict won with ``strength``."""
    rng = np.random.default_rng(seed)
    out = []
    for item in range(items):
        verdict = float(rng.random() < strength)
        out += [(item, verdict if rng.random() < agree else 1 - verdict) for _ in range(3)]
    return out


def test_three_raters_agreeing_90_percent_count_once_per_item():
    """Treating 3 correlated judgments as 3 samples understates the variance (the defect); the item-level
    interval matches a cluster-robust standard error (statsmodels OLS, clusters = items)."""
    judged = _three_raters(120, 0.9, seed=5)
    items = item_outcomes(judged)
    scores = np.array([s for _, s in judged])
    groups = np.array([i for i, _ in judged])
    robust = sm.OLS(scores, np.ones(len(scores))).fit(cov_type="cluster", cov_kwds={"groups": groups})
    naive = sm.OLS(scores, np.ones(len(scores))).fit()
    half = (items.ci95[1] - items.ci95[0]) / 2
    assert half == pytest.approx(1.96 * float(robust.bse[0]), rel=0.1)
    per_judgment = HeadToHead(int(scores.sum()), int(len(scores) - scores.sum()), 0, 0)
    naive_half = (per_judgment.ci95[1] - per_judgment.ci95[0]) / 2
    assert naive_half == pytest.approx(1.96 * float(naive.bse[0]), rel=0.1)
    assert half > 1.4 * naive_half  # the design effect of 3 raters agreeing 90%
    # the test is the sign test of item majorities, computed here independently
    majority = [sum(s for i, s in judged if i == k) for k in range(120)]
    won, lost = sum(m >= 2 for m in majority), sum(m <= 1 for m in majority)
    assert items.p_value == pytest.approx(binomtest(won, won + lost).pvalue)
    assert per_judgment.p_value < items.p_value


def test_cluster_bootstrap_of_ratings_matches_a_cluster_robust_logit():
    judged = _three_raters(150, 0.9, seed=11, strength=0.65)
    fights = [("x", "y", s) if k % 2 else ("y", "x", 1 - s) for k, (_, s) in enumerate(judged)]
    clusters = [i for i, _ in judged]
    ci = bootstrap_bradley_terry(fights, rounds=400, seed=1, anchor="y", clusters=clusters)
    design = np.array([[1.0 if a == "x" else -1.0] for a, _, _ in fights])
    outcome = np.array([s for _, _, s in fights])
    fit = Logit(outcome, design).fit(disp=0, cov_type="cluster", cov_kwds={"groups": np.array(clusters)})
    expected = 2 * 1.96 * float(fit.bse[0]) * 400 / math.log(10)
    assert ci["x"][1] - ci["x"][0] == pytest.approx(expected, rel=0.2)
    per_battle = bootstrap_bradley_terry(fights, rounds=400, seed=1, anchor="y")
    assert (ci["x"][1] - ci["x"][0]) > 1.3 * (per_battle["x"][1] - per_battle["x"][0])
    # the draws follow the item keys, not the order the battles came in
    order = np.random.default_rng(0).permutation(len(fights))
    shuffled = bootstrap_bradley_terry(
        [fights[k] for k in order], rounds=400, seed=1, anchor="y", clusters=[clusters[k] for k in order]
    )
    assert shuffled["x"] == pytest.approx(ci["x"], abs=1e-6)


# --- a bias as a covariate, with the models' strengths held fixed -------------------------------------------


def _sided_battles(seed: int, left_effect: float = 0.0):
    """x (strong) is always on the left against y and z; y and z meet with sides balanced."""
    rng = np.random.default_rng(seed)
    strength = {"x": 1.2, "y": 0.0, "z": 0.3}
    battles, clusters = [], []
    for k in range(600):
        left, right = ("x", str(rng.choice(["y", "z"]))) if k % 3 == 0 else tuple(rng.permutation(["y", "z"]))
        p = 1 / (1 + math.exp(-(strength[left] - strength[right] + left_effect)))
        battles.append((left, right, float(rng.random() < p)))
        clusters.append(k // 2)
    return battles, clusters


def test_covariate_fit_matches_statsmodels_cluster_robust_logit():
    battles, clusters = _sided_battles(seed=2, left_effect=0.0)
    fit = bradley_terry_covariate(battles, [1.0] * len(battles), clusters)
    names = ["x", "y", "z"]  # x is the reference: no column
    design = np.array([[(a == m) - (b == m) for m in names[1:]] + [1.0] for a, b, _ in battles], dtype=float)
    outcome = np.array([s for _, _, s in battles])
    ref = Logit(outcome, design).fit(disp=0, cov_type="cluster", cov_kwds={"groups": np.array(clusters)})
    assert fit.effect == pytest.approx(float(ref.params[-1]), abs=2e-3)
    assert fit.se == pytest.approx(float(ref.bse[-1]), rel=1e-2)
    assert fit.p_value == pytest.approx(float(ref.pvalues[-1]), abs=5e-3)
    assert fit.p_value > 0.05  # no left effect was simulated, whatever the raw left share says
    raw_left = sum(s for _, _, s in battles) / len(battles)
    assert raw_left > 0.55 and binomtest(int(raw_left * len(battles)), len(battles)).pvalue < 0.05
    biased, _ = _sided_battles(seed=3, left_effect=0.6)
    fitted = bradley_terry_covariate(biased, [1.0] * len(biased), clusters)
    assert fitted.p_value < 0.01 and fitted.share == pytest.approx(1 / (1 + math.exp(-0.6)), abs=0.06)


def test_covariate_cannot_be_separated_when_one_of_two_models_is_always_left():
    battles = [("x", "y", float(k % 10 < 7)) for k in range(200)]  # x always left, wins 70%
    assert not covariate_separable(battles, [1.0] * 200)
    assert bradley_terry_covariate(battles, [1.0] * 200, list(range(200))) is None
    mixed = battles + [("y", "x", 0.0)] * 20
    assert covariate_separable(mixed, [1.0] * 220)


@pytest.mark.parametrize(("k1", "n1", "k2", "n2"), [(22, 90, 34, 100), (28, 96, 33, 100), (5, 40, 30, 45)])
def test_ratio_interval_matches_statsmodels_log_method(k1: int, n1: int, k2: int, n2: int) -> None:
    from statsmodels.stats.proportion import confint_proportions_2indep

    expected = confint_proportions_2indep(k1, n1, k2, n2, method="log", compare="ratio")
    assert ratio_interval(k1, n1, k2, n2) == pytest.approx(expected, rel=1e-9)


def test_ratio_interval_with_a_zero_count_is_still_finite() -> None:
    low, high = ratio_interval(0, 50, 20, 50)
    assert 0 < low < high < 0.5
