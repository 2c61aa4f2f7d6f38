"""The report end to end on a real database with real judgments: exact hand-counted figures."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import types
import typing
from pathlib import Path

import numpy as np
import pytest
import statsmodels.api as sm
from scipy.stats import binomtest
from sqlmodel import select
from statsmodels.stats.proportion import proportion_confint

from core.config import ReportConfig
from evaluation.analysis import JudgmentRecord, ReportData, VersionInfo, analyse, conclusion
from evaluation.report import build_report, write_report
from evaluation.stats import ItemOutcomes, judgments_needed, krippendorff_alpha_nominal
from storage.db import make_engine, migrate, session_scope
from storage.models import Candidate, ModelVersion, Prompt
from storage.repo import get_or_create_candidate
from testkit.eval_seed import build_eval_db

FAST = ReportConfig(bootstrap_rounds=200)
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def eval_db(engine):
    build_eval_db(engine)
    return engine


@pytest.fixture(scope="module")
def report_data(tmp_path_factory) -> dict:
    """One report over ``build_eval_db``, shared by the tests that only read its figures."""
    eng = make_engine(f"sqlite:///{tmp_path_factory.mktemp('eval') / 'prefloop.db'}")
    migrate(eng)
    build_eval_db(eng)
    data = build_report(eng, FAST).data.to_json()
    eng.dispose()
    return data


def test_head_to_head_counts_current_human_judgments_only(report_data):
    data = report_data
    assert data["annotator_kind"] == "human"
    [comp] = data["comparisons"]
    # alice W W W L W W W L T B (her first answer on prompt 0 was revised) + bob W W W L L T (+ a skip)
    assert (comp["model"], comp["baseline"], comp["oriented_by"]) == ("round-1", "base", "round")
    assert (comp["wins"], comp["losses"], comp["ties"], comp["both_bad"], comp["n"]) == (9, 4, 2, 1, 16)
    # the 10 prompts are the items: scores 1 1 1 0 .5 .75 1 0 .5 .5 (bob's judgments share alice's items)
    assert (comp["items"], comp["item_wins"], comp["item_losses"], comp["item_ties"]) == (10, 5, 2, 3)
    assert comp["win_rate"] == round(6.25 / 10, 3)
    # Wilson at the items' effective size (Kish): split items (.5, .75) are worth more than one 0/1 trial
    scores = np.array([1, 1, 1, 0, 0.5, 0.75, 1, 0, 0.5, 0.5])
    n_eff = min(16, 10 * 0.625 * 0.375 / scores.var())  # 16.7, capped at the 16 judgments behind them
    assert comp["ci95"] == [round(x, 3) for x in proportion_confint(0.625 * n_eff, n_eff, method="wilson")]
    assert comp["p_value"] == round(binomtest(5, 7).pvalue, 3)
    assert comp["judgment_win_rate"] == round((9 + 0.5 * 3) / 16, 3)
    assert comp["annotators"]["alice"]["wins"] == 6 and comp["annotators"]["alice"]["n"] == 10
    assert comp["annotators"]["bob"]["n"] == 6
    assert "sign test" in comp["test"]
    assert data["unit"].startswith("item: one prompt") and data["items"] == 10


def test_simulated_judgments_are_reported_apart(report_data):
    data = report_data
    assert list(data["groups"]) == ["human", "simulated"]
    sim = data["groups"]["simulated"]
    assert sim["annotators"] == ["sim"]
    pairs = {(c["model"], c["baseline"]): (c["wins"], c["losses"]) for c in sim["comparisons"]}
    assert pairs == {("round-2", "base"): (9, 1), ("round-2", "round-1"): (7, 3)}
    # nothing simulated leaks into the human (headline) figures
    assert "round-2" not in data["bradley_terry"]
    assert set(data["groups"]["human"]["annotators"]) == {"alice", "bob"}


def test_bradley_terry_per_round(report_data):
    data = report_data
    bt = data["groups"]["simulated"]["bradley_terry"]
    assert [bt[m]["round"] for m in ("base", "round-1", "round-2")] == [0, 1, 2]
    assert bt["base"]["rating"] == 1000.0
    assert bt["round-2"]["rating"] > 1000.0
    for rating in bt.values():
        assert rating["ci95"][0] <= rating["rating"] <= rating["ci95"][1]


def test_position_and_length_bias(report_data):
    data = report_data
    position = data["position_bias"]
    # alice chose the left side in all 8 decisive judgments, bob in none of his 5
    assert (position["k"], position["n"]) == (8, 13)
    assert position["separable"] and position["adjusted_share"] is not None
    assert position["statement"].startswith("No evidence of bias")
    alice, bob = position["annotators"]["alice"], position["annotators"]["bob"]
    assert (alice["share"], bob["share"]) == (1.0, 0.0)
    # a boundary fit (every decisive judgment one way) falls back to the exact test of the raw share
    assert alice["p_value"] == round(binomtest(8, 8).pvalue, 3) and "exact binomial" in alice["statement"]
    # round-1's titles are always the longer ones: length cannot be told from round-1's strength
    length = data["length_bias"]
    assert (length["k"], length["n"]) == (9, 13)
    assert not length["separable"] and length["p_value"] is None
    assert (
        "round-1 was the longer one in 100% of its 13 battles: the bias cannot be separated"
        in (length["statement"])
    )


def test_agreement_on_pairs_judged_twice(report_data):
    agreement = report_data["agreement"]
    assert agreement["items"] == 6
    [pair] = agreement["cohen_kappa"]
    assert pair["annotators"] == ["alice", "bob"]
    # alice W W W L W W vs bob W W W L L T: po = 4/6, pe = (5*3 + 1*2)/36 → κ = 7/19
    assert pair["kappa"] == round(7 / 19, 3)
    assert pair["percent_agreement"] == round(4 / 6, 3)
    units = [["W", "W"], ["W", "W"], ["W", "W"], ["L", "L"], ["W", "L"], ["W", "T"]]
    assert agreement["krippendorff_alpha"]["alpha"] == round(krippendorff_alpha_nominal(units), 3)
    assert agreement["fleiss_kappa"]["items"] == 6 and agreement["fleiss_kappa"]["raters_per_item"] == 2


def test_power_is_stated_in_words(report_data):
    data = report_data
    [power] = data["power"]
    needed = judgments_needed(6.25 / 10, 10)
    assert power["items_needed"] == needed > 0 and power["items"] == 10
    assert "too few items to conclude" in power["conclusion"]
    assert f"about {needed} more eval items" in power["conclusion"]


def test_health_flags_the_broken_model_at_the_top(eval_db, tmp_path):
    data = write_report(eval_db, tmp_path / "report", FAST).to_json()
    assert set(data["health"]) == {"base", "round-1", "round-2"}
    assert data["health"]["round-2"]["eot_share"] == 0.0
    assert data["health"]["round-2"]["repeat_share"] == 1.0
    assert data["health"]["round-1"]["flags"] == []
    assert len(data["flags"]) == 2 and all(f.startswith("round-2: ") for f in data["flags"])
    markdown = (tmp_path / "report" / "report.md").read_text()
    top = markdown.split("## Headline")[0]
    assert "## Warning: output health" in top and "end-of-turn" in top


def test_report_files_and_json_contract(eval_db, tmp_path):
    out = tmp_path / "report"
    write_report(eval_db, out, FAST)
    assert sorted(p.name for p in out.iterdir()) == [
        "bradley_terry.png",
        "lengths.png",
        "report.html",
        "report.json",
        "report.md",
        "win_rates.png",
    ]
    data = json.loads((out / "report.json").read_text())
    for key in ("comparisons", "bradley_terry", "position_bias", "length_bias", "agreement"):
        assert key in data
    comp = data["comparisons"][0]
    for key in (
        "model",
        "baseline",
        "n",
        "wins",
        "losses",
        "ties",
        "both_bad",
        "win_rate",
        "ci95",
        "p_value",
    ):
        assert key in comp
    assert set(data["bradley_terry"]["round-1"]) >= {"rating", "ci95"}
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3
    assert 'src="' not in page.replace('src="data:', "")  # self-contained: no file references
    assert "<script" not in page


def test_rewrite_replaces_the_folder(eval_db, tmp_path):
    out = tmp_path / "reports" / "latest"
    out.mkdir(parents=True)
    (out / "stale.txt").write_text("old")
    write_report(eval_db, out, FAST)
    assert not (out / "stale.txt").exists()
    assert [p.name for p in out.parent.iterdir()] == ["latest"]  # no staging folder left behind


def test_empty_database_reports_nothing_yet(engine, tmp_path):
    data = write_report(engine, tmp_path / "r", FAST).to_json()
    assert data["comparisons"] == [] and data["groups"] == {}
    assert data["headline"].startswith("No eval judgments yet")
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["report.html", "report.json", "report.md"]
    markdown = (tmp_path / "r" / "report.md").read_text()
    assert "within the configured bounds" not in markdown and "No eval candidates yet." in markdown


def _record(cid, annotator, choice, model_a="round-1", model_b="base", kind="human", left=None):
    return JudgmentRecord(cid, f"p{cid}", annotator, kind, choice, left, model_a, model_b, "x" * 10, "y" * 20)


def test_analyse_orients_against_base_and_counts_ties_as_half():
    versions = {"base": VersionInfo("base", "base", 0), "round-1": VersionInfo("round-1", "adapter", 1)}
    # base is model_a here: the comparison is still "round-1 vs base", wins seen from round-1
    records = [
        _record(1, "ann", "b", "base", "round-1"),
        _record(2, "ann", "tie"),
        _record(3, "ann", "both_bad"),
    ]
    data = analyse(records, versions, {}, FAST).to_json()
    [comp] = data["comparisons"]
    assert (comp["model"], comp["baseline"], comp["wins"], comp["ties"], comp["both_bad"]) == (
        "round-1",
        "base",
        1,
        1,
        1,
    )
    assert comp["win_rate"] == round(2 / 3, 3)
    assert data["length_bias"]["n"] == 1 and data["length_bias"]["k"] == 1  # "y"*20 was longer and won


def test_conclusion_words():
    def items(wins, losses, ties=0):
        return ItemOutcomes((1.0,) * wins + (0.0,) * losses + (0.5,) * ties)

    assert conclusion("r", "base", items(34, 16), 50)[0].endswith("r is preferred over base.")
    assert conclusion("r", "base", items(16, 34), 50)[0].endswith("base is preferred over r.")
    words, needed = conclusion("r", "base", items(5, 5), 10)
    assert needed is None and "no preference either way" in words
    words, needed = conclusion("r", "base", items(0, 0), 0)
    assert needed is None and "no eval judgments yet" in words
    words, needed = conclusion("r", "base", items(6, 4), 10)
    assert needed == judgments_needed(0.6, 10) and "too few items" in words
    words, needed = conclusion("r", "base", items(90, 92, 70), 252)  # the first real simulated round
    assert needed > 100_000 and "no meaningful preference: at the observed 49.6%" in words
    assert "252 items" in conclusion("r", "base", items(90, 92, 70), 252)[0]
    assert "of 10 items (30 judgments)" in conclusion("r", "base", items(6, 4), 30)[0]


def test_cli_report_prints_the_headline(eval_db, sqlite_url, tmp_path):
    env = {**os.environ, "PREFLOOP_DB": sqlite_url}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "prefloop.cli",
            "--set",
            "report.bootstrap_rounds=100",
            "report",
            "--out",
            str(tmp_path / "r"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "round-1 vs base (human annotators): win rate 0.62" in " ".join(result.stdout.split())
    assert "health:" in result.stdout and "round-2" in result.stdout
    assert (tmp_path / "r" / "report.json").exists()


def test_gather_on_both_backends(any_engine):
    build_eval_db(any_engine)
    data = build_report(any_engine, FAST).data.to_json()
    assert (data["comparisons"][0]["wins"], data["comparisons"][0]["n"]) == (9, 16)
    assert data["agreement"]["items"] == 6


def test_distinct_share_counts_samples_storage_deduplicated(eval_db):
    """Generation stores each distinct text once; ``sampling.n`` says how many were drawn per prompt."""
    with session_scope(eval_db, write=True) as session:
        round_1 = session.exec(select(ModelVersion).where(ModelVersion.name == "round-1")).one()
        for cand in session.exec(select(Candidate).where(Candidate.model_version_id == round_1.id)):
            cand.sampling = {"n": 4, "temperature": 1.0}
            session.add(cand)
    data = build_report(eval_db, FAST).data.to_json()
    assert data["health"]["round-1"]["distinct_share"] == 0.25  # 1 stored text of 4 drawn, per prompt
    assert any(f.startswith("round-1: 25% of samples per prompt are distinct") for f in data["flags"])


def test_distinct_share_counts_every_draw_not_only_the_paired_ones(eval_db):
    """A prompt with fewer eval pairs than samples (120 pairs over 17 prompts: 8 of 10 samples in pairs):
    the samples left out of pairs still count, so all-different samples read 100% distinct."""
    with session_scope(eval_db, write=True) as session:
        round_1 = session.exec(select(ModelVersion).where(ModelVersion.name == "round-1")).one()
        for cand in session.exec(select(Candidate).where(Candidate.model_version_id == round_1.id)).all():
            cand.sampling = {"n": 2, "temperature": 1.0}
            session.add(cand)
            prompt = session.get(Prompt, cand.prompt_id)
            second = cand.text + " (second draw)"
            get_or_create_candidate(session, prompt, round_1, second, sampling=cand.sampling)
    health = build_report(eval_db, FAST).data.to_json()["health"]["round-1"]
    assert health["distinct_share"] == 1.0 and health["samples"] == 20  # 2 per prompt, one of them paired


# --- synthetic data built to expose each defect ------------------------------------------------------

VERSIONS = {"base": VersionInfo("base", "base", 0), "round-1": VersionInfo("round-1", "adapter", 1)}


def _battle_records(rows, kind="imported"):
    """``rows``: (item, annotator, left model, right model, winner "left"/"right"/"tie")."""
    out = []
    for item, annotator, left, right, winner in rows:  # one pair per item: the item is its comparison id
        choice = {"left": "a", "right": "b", "tie": "tie"}[winner]
        out.append(
            JudgmentRecord(
                item, f"p{item}", annotator, kind, choice, "a", left, right, f"{left} {item}", f"{right}!"
            )
        )
    return out


def test_strong_model_always_on_the_left_is_not_called_biased():
    rng = np.random.default_rng(4)
    rows = [(k, "j", "strong", "weak", "left" if rng.random() < 0.7 else "right") for k in range(200)]
    bias = analyse(_battle_records(rows), {}, {}, FAST).position_bias
    assert bias.share > 0.6 and binomtest(bias.k, bias.n).pvalue < 0.001  # what the old report called bias
    assert not bias.separable and bias.p_value is None
    assert (
        "strong was on the left in 100% of its 200 battles: the bias cannot be separated from strong's "
        in (bias.statement)
    )
    assert not bias.statement.startswith("Biased")


def test_strong_model_always_left_among_balanced_pairs_is_estimated_with_strength_fixed():
    """x always left, y and z balanced, no side effect simulated: the adjusted share is ~50% and agrees
    with statsmodels' logit with a left term and per-item clustered errors."""
    rng = np.random.default_rng(2)  # (over 200 seeds the adjusted test rejects at 6%: calibrated)
    strength = {"x": 1.2, "y": 0.0, "z": 0.3}
    rows = []
    for k in range(450):
        left, right = (
            ("x", str(rng.choice(["y", "z"]))) if k % 3 == 0 else tuple(map(str, rng.permutation(["y", "z"])))
        )
        p = 1 / (1 + np.exp(strength[right] - strength[left]))
        rows.append((k // 3, "j", left, right, "left" if rng.random() < p else "right"))
    bias = analyse(_battle_records(rows), {}, {}, FAST).position_bias
    design = np.array(
        [[(a == m) - (b == m) for m in ("y", "z")] + [1.0] for _, _, a, b, _ in rows], dtype=float
    )
    outcome = np.array([w == "left" for *_, w in rows], dtype=float)
    groups = np.array([item for item, *_ in rows])
    ref = sm.Logit(outcome, design).fit(disp=0, cov_type="cluster", cov_kwds={"groups": groups})
    assert bias.separable and binomtest(bias.k, bias.n).pvalue < 0.001  # raw: confounded with x's strength
    assert bias.adjusted_share == pytest.approx(1 / (1 + np.exp(-ref.params[-1])), abs=2e-3)
    assert bias.p_value == pytest.approx(ref.pvalues[-1], abs=5e-3)
    assert bias.statement.startswith("No evidence of bias")
    assert "x was on the left in 100% of its" in " ".join(bias.balance)


def test_several_models_without_base():
    rng = np.random.default_rng(1)
    strength = {"alpha": 0.0, "beta": 0.5, "gamma": 1.0, "delta": -0.5}
    names = sorted(strength)
    rows = []
    for item in range(160):
        left, right = (str(m) for m in rng.choice(names, 2, replace=False))
        p = 1 / (1 + np.exp(strength[right] - strength[left]))
        for judge in ("j1", "j2"):
            rows.append((item, judge, left, right, "left" if rng.random() < p else "right"))
    data = analyse(_battle_records(rows), {}, {}, FAST)
    assert data.anchor is None and "centred on a mean of 1000" in data.bradley_terry_scale
    ratings = data.bradley_terry
    assert list(ratings) == sorted(ratings, key=lambda m: -ratings[m].rating)  # the leaderboard's order
    assert list(ratings)[0] == "gamma" and [r.rank for r in ratings.values()] == [1, 2, 3, 4]
    assert np.mean([r.rating for r in ratings.values()]) == pytest.approx(1000, abs=0.1)
    assert data.headline_rule.endswith("the Bradley-Terry leaderboard") and data.headline.startswith(
        "Leaderboard (4 models): 1. gamma"
    )
    # each pair faces the higher rating against the lower
    assert all(ratings[c.model].rating >= ratings[c.baseline].rating for c in data.comparisons)
    assert {c.oriented_by for c in data.comparisons} == {"rating"}
    per_model = {s.model: s for s in data.per_model}
    assert set(per_model) == set(names) and [s.model for s in data.per_model] == list(ratings)
    # ties ½ against all others, per judgment, and the items are (prompt, opponent)
    for name, standing in per_model.items():
        mine = [r for r in rows if name in (r[2], r[3])]
        won = sum((w == "left") == (left == name) for _, _, left, _, w in mine)
        assert (standing.n, standing.wins, standing.losses) == (len(mine), won, len(mine) - won)
        assert standing.items == len({r[0] for r in mine})
    assert data.method[0].startswith("Imported records")


def test_one_judgment_per_item_keeps_the_judgment_figures():
    rows = [(k, "j", "round-1", "base", "left" if k < 34 else "right") for k in range(50)]
    [comp] = analyse(_battle_records(rows, kind="human"), VERSIONS, {}, FAST).comparisons
    assert (comp.model, comp.baseline, comp.oriented_by) == ("round-1", "base", "round")
    assert (comp.items, comp.n, comp.win_rate, comp.ci95, comp.p_value) == (
        50,
        50,
        0.68,
        [0.542, 0.792],
        0.015,
    )
    assert comp.judgment_win_rate == comp.win_rate


def test_three_raters_agreeing_on_one_item_are_one_observation():
    """30 items, each judged by 3 raters who agree: the per-judgment sign test of 60 vs 30 says p = 0.002,
    the items (20 vs 10) say p = 0.099: the report's p is the latter."""
    rows = [
        (k, r, "round-1", "base", "left" if k < 20 else "right") for k in range(30) for r in ("a", "b", "c")
    ]
    data = analyse(_battle_records(rows, kind="human"), VERSIONS, {}, FAST)
    [comp] = data.comparisons
    assert (comp.n, comp.wins, comp.items, comp.item_wins) == (90, 60, 30, 20)
    assert comp.p_value == round(binomtest(20, 30).pvalue, 3)
    assert binomtest(60, 90).pvalue < 0.01 < comp.p_value
    assert comp.ci95 == [round(x, 3) for x in proportion_confint(20, 30, method="wilson")]
    assert data.agreement.krippendorff_alpha.alpha == 1.0


def test_report_json_follows_the_dataclass_schema(report_data):
    """report.json is ReportData.to_json(): every key and value type is the dataclass tree's."""

    def check(value, hint, where):
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if dataclasses.is_dataclass(hint):
            hints = typing.get_type_hints(hint)
            assert isinstance(value, dict) and set(value) == set(hints), where
            for key, sub in hints.items():
                check(value[key], sub, f"{where}.{key}")
        elif origin in (types.UnionType, typing.Union):
            assert any(_fits(value, a) for a in args), where
            if value is not None:
                check(value, next(a for a in args if a is not type(None) and _fits(value, a)), where)
        elif origin in (list, tuple):
            assert isinstance(value, list), where
            for k, item in enumerate(value):
                check(item, args[0], f"{where}[{k}]")
        elif origin is dict:
            assert isinstance(value, dict), where
            for key, item in value.items():
                check(item, args[1], f"{where}.{key}")
        elif hint is float:
            assert isinstance(value, (int, float)) and not isinstance(value, bool), where
        else:
            assert isinstance(value, hint), where

    check(report_data, ReportData, "report")


def _fits(value, hint) -> bool:
    if hint is type(None):
        return value is None
    origin = typing.get_origin(hint) or hint
    if dataclasses.is_dataclass(hint):
        return isinstance(value, dict)
    if origin in (list, tuple):
        return isinstance(value, list)
    if hint is float:
        return isinstance(value, (int, float))
    return isinstance(value, origin)
