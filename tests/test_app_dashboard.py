"""Dashboard and Compare: admins only (AppTest), the Dashboard's numbers (pure functions), and Compare
generating blind with the real tiny model."""

from __future__ import annotations

import json
import math

import pytest
from streamlit.testing.v1 import AppTest

from annotate_app import dashboard_data as data
from annotate_app.context import User
from core.config import AnnotateConfig
from evaluation.stats import binomial_p, cohen_kappa, krippendorff_alpha_nominal
from labelling.assignment import next_pair, record_judgment
from storage.db import session_scope
from storage.models import Choice, Role, RunStatus, TrainingRun, VersionKind
from storage.repo import get_or_create_version
from testkit.annotate_seed import add_annotator, app_env, seed_pairs  # noqa: F401  (app_env is a fixture)

SETTINGS = AnnotateConfig(overlap_train=1, overlap_eval=2, eval_share=1.0)


def _dashboard_script() -> None:
    from annotate_app import dashboard_page

    dashboard_page.render()


def _compare_script() -> None:
    from annotate_app import compare_page

    compare_page.render_page()


def page_as(script, user: User | None) -> AppTest:
    at = AppTest.from_function(script, default_timeout=20)
    if user is not None:
        at.session_state["prefloop_user"] = user
    at.run()
    assert not at.exception, at.exception
    return at


@pytest.mark.usefixtures("app_env")
@pytest.mark.parametrize("script", [_dashboard_script, _compare_script])
@pytest.mark.parametrize("user", [None, User(id=1, name="alice", role=Role.annotator)])
def test_admin_pages_refuse_annotators_and_strangers(engine, script, user):
    seed_pairs(engine, train=1)
    at = page_as(script, user)
    assert "for admins only" in at.error[0].value
    assert not at.dataframe and not at.title, "nothing of the page is rendered"


def label_overlapping_pairs(engine) -> tuple[int, int]:
    """Two annotators judge the same 4 eval pairs; they agree on 3."""
    seed_pairs(engine, train=2, eval=4)
    alice, bob = add_annotator(engine, "alice"), add_annotator(engine, "bob")
    for who, choices in ((alice, ["a", "a", "b", "tie"]), (bob, ["a", "a", "b", "b"])):
        for choice in choices:
            got = next_pair(engine, who, SETTINGS)
            record_judgment(
                engine,
                who,
                got.comparison_id,
                Choice(choice),
                left=got.left,
                settings=SETTINGS,
                ms_to_decide=2000,
            )
    return alice, bob


@pytest.mark.usefixtures("app_env")
def test_admin_sees_rounds_annotators_agreement_and_loss_curves(engine):
    label_overlapping_pairs(engine)
    metrics = [
        {"step": 5, "loss": 0.69, "rewards/accuracies": 0.5},
        {"step": 10, "loss": 0.41, "eval_loss": 0.5},
    ]
    with session_scope(engine, write=True) as session:
        session.add(TrainingRun(round_id=0, metrics=metrics, status=RunStatus.completed))
    admin = add_annotator(engine, "root", Role.admin)
    at = page_as(_dashboard_script, User(id=admin, name="root", role=Role.admin))
    assert [s.value for s in at.subheader] == ["Rounds", "Annotators", "Training runs", "Win rate history"]
    rounds = at.dataframe[0].value
    assert rounds.iloc[0].to_dict() | {"coverage": None} == {
        "round": "0",
        "train pairs": 2,
        "eval pairs": 4,
        "decisions": 8,
        "skips": 0,
        "coverage": None,
    }
    assert rounds.iloc[0]["coverage"] == pytest.approx(4 / 6)
    people = at.dataframe[1].value.set_index("annotator")
    assert people.loc["alice", "decisions"] == 4 and people.loc["alice", "median s"] == 2.0
    assert people.loc["alice", "tie rate"] == 0.25
    expected_alpha = krippendorff_alpha_nominal([["a", "a"], ["a", "a"], ["b", "b"], ["tie", "b"]])
    assert at.metric[0].value == f"{expected_alpha:.2f}"
    kappa = at.dataframe[2].value.iloc[0]
    assert kappa["shared pairs"] == 4 and kappa["agreement"] == 0.75
    assert at.get("arrow_line_chart") or at.get("vega_lite_chart"), "the loss curve is drawn"


def rows(*specs) -> list[data.JudgmentRow]:
    return [
        data.JudgmentRow(cid, 0, "eval", who, "human", choice, left, ms)
        for cid, who, choice, left, ms in specs
    ]


def test_annotator_table_position_bias_and_speed():
    judged = rows(
        *[(i, "lefty", "a", "a", 1000 + i) for i in range(9)],
        (9, "lefty", "b", "a", 3000),
        (10, "lefty", "skip", "a", 10),
        (11, "lefty", "tie", "b", 500),
    )
    (row,) = data.annotator_table(judged)
    assert row["decisions"] == 11 and row["skips"] == 1
    assert row["left-choice rate"] == pytest.approx(9 / 10)
    assert row["left p-value"] == pytest.approx(binomial_p(9, 10))
    assert row["left p-value"] < 0.05, "9 of 10 on the left is position bias"
    assert row["tie rate"] == pytest.approx(1 / 11)
    assert row["median s"] == pytest.approx(1.004), "median of 500, 1000..1008, 3000 ms (skips excluded)"


def test_agreement_uses_only_shared_decisions():
    judged = rows(
        (1, "x", "a", "a", None),
        (1, "y", "a", "b", None),
        (2, "x", "b", "a", None),
        (2, "y", "tie", "a", None),
        (3, "x", "a", "a", None),
        (3, "y", "skip", "a", None),  # a skip is not a label
        (4, "x", "a", "a", None),  # judged by one annotator only
    )
    (pair,) = data.pairwise_kappa(judged)
    assert pair["shared pairs"] == 2 and pair["agreement"] == 0.5
    expected = cohen_kappa(["a", "b"], ["a", "tie"])
    assert (pair["κ"] is None and math.isnan(expected)) or pair["κ"] == pytest.approx(expected)
    alpha, shared = data.overall_alpha(judged)
    assert shared == 2 and alpha == pytest.approx(krippendorff_alpha_nominal([["a", "a"], ["b", "tie"]]))


def test_round_coverage_counts_overlap_per_purpose():
    pairs = [data.PairRow(1, 2, "train"), data.PairRow(2, 2, "eval"), data.PairRow(3, None, "train")]
    judged = [
        data.JudgmentRow(1, 2, "train", "x", "human", "a", "a", 1),
        data.JudgmentRow(2, 2, "eval", "x", "human", "b", "a", 1),
        data.JudgmentRow(3, None, "train", "x", "human", "skip", "a", 1),
    ]
    table = data.round_table(pairs, judged, SETTINGS)
    assert [r["round"] for r in table] == ["2", data.NO_ROUND]
    assert table[0]["coverage"] == 0.5, "the eval pair wants two decisions"
    assert table[1]["coverage"] == 0.0 and table[1]["skips"] == 1


def test_loss_curve_and_win_rate_history(tmp_path):
    curve = data.loss_curve(
        [{"step": 1, "loss": 0.7, "lr": 1e-4}, {"step": 2, "loss": float("nan"), "eval_loss": 0.6}]
    )
    assert curve == {"loss": {1: 0.7}, "eval_loss": {2: 0.6}}
    report = tmp_path / "report.json"
    assert data.win_rate_history(report) == []
    comparison = {"model": "round-1", "baseline": "base", "win_rate": 0.68, "ci95": [0.54, 0.79], "n": 50}
    report.write_text(json.dumps({"comparisons": [comparison | {"p_value": 0.01}]}))
    (row,) = data.win_rate_history(report)
    assert row["win rate"] == 0.68 and row["ci95 low"] == 0.54 and row["n"] == 50


@pytest.mark.slow
@pytest.mark.usefixtures("app_env")
def test_compare_generates_blind_with_the_real_model_then_reveals(engine):
    with session_scope(engine, write=True) as session:
        get_or_create_version(session, "base", VersionKind.base, "tiny")
    admin = add_annotator(engine, "root", Role.admin)
    at = page_as(_compare_script, User(id=admin, name="root", role=Role.admin))
    assert at.multiselect[0].value == ["base"]
    at.selectbox[0].select("youtube-title")
    at.text_area[0].input("How I built a treehouse in one weekend")
    at.slider[0].set_value(2).run()  # Generate is enabled once there is a prompt
    at.button[0].click().run(timeout=180)
    assert not at.exception, at.exception
    captions = [c.value for c in at.caption]
    assert "Model 1" in captions and "base" not in captions, "blind until revealed"
    outputs = [t.value for t in at.text][1:]  # [0] is the rendered prompt
    assert len(outputs) == 2 and all(isinstance(o, str) for o in outputs)
    assert "**Video Idea**: How I built a treehouse in one weekend" in at.text[0].value
    next(b for b in at.button if b.label.startswith("Reveal")).click().run()
    assert "base" in [c.value for c in at.caption]
