"""Dashboard and Compare: admins only (AppTest), the Dashboard's numbers (pure functions), and Compare
generating blind with the real tiny model."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta

import pytest
from sqlmodel import select
from streamlit.testing.v1 import AppTest

from annotate_app import dashboard_data as data
from annotate_app.context import User
from core.config import AnnotateConfig
from evaluation import plots
from evaluation.stats import binomial_p, cohen_kappa, krippendorff_alpha_nominal
from labelling.assignment import next_pair, record_judgment
from storage.db import session_scope
from storage.models import (
    Candidate,
    Choice,
    Comparison,
    Judgment,
    ModelVersion,
    Prompt,
    Purpose,
    Role,
    RunStatus,
    Split,
    TrainingRun,
    VersionKind,
)
from storage.repo import get_or_create_version
from testkit.annotate_seed import add_annotator, app_env, seed_pairs  # noqa: F401  (app_env is a fixture)
from training.plots import loss_curve_figure

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
    assert [s.value for s in at.subheader] == [
        "Rounds",
        "Annotators",
        "Agreement",
        "Training runs",
        "Win rates",
    ]
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
    habits = at.dataframe[2].value.set_index("annotator")
    assert habits.loc["alice", "tie rate"] == 0.25
    expected_alpha = krippendorff_alpha_nominal([["a", "a"], ["a", "a"], ["b", "b"], ["tie", "b"]])
    assert at.metric[0].value == f"{expected_alpha:.2f}"
    kappa = at.dataframe[3].value.iloc[0]
    assert kappa["shared pairs"] == 4 and kappa["agreement"] == 0.75
    images = at.get("image")
    assert len(images) == 4, "throughput, time to decide, and the run's two curves are drawn"


T0 = datetime(2026, 12, 1, 9, 0)


def rows(*specs) -> list[data.JudgmentRow]:
    """(pair, annotator, choice, left, ms to decide): one judgment every 10 s from T0, in order."""
    return [
        data.JudgmentRow(cid, 0, "eval", who, "human", choice, left, ms, T0 + timedelta(seconds=10 * i))
        for i, (cid, who, choice, left, ms) in enumerate(specs)
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
        data.JudgmentRow(1, 2, "train", "x", "human", "a", "a", 1, T0),
        data.JudgmentRow(2, 2, "eval", "x", "human", "b", "a", 1, T0),
        data.JudgmentRow(3, None, "train", "x", "human", "skip", "a", 1, T0),
    ]
    table = data.round_table(pairs, judged, SETTINGS)
    assert [r["round"] for r in table] == ["2", data.NO_ROUND]
    assert table[0]["coverage"] == 0.5, "the eval pair wants two decisions"
    assert table[1]["coverage"] == 0.0 and table[1]["skips"] == 1


def test_throughput_per_active_hour_and_per_clock_hour():
    at = [T0 + timedelta(seconds=s) for s in (0, 20, 40, 60, 3600, 3630)]  # a 58-minute break after 60 s
    rate = data.decisions_per_active_hour(at)
    assert rate == pytest.approx(3600 * 4 / (20 + 20 + 20 + 30)), "the break is not labelling time"
    assert data.decisions_per_active_hour(list(reversed(at))) == rate, "independent of row order"
    assert data.decisions_per_active_hour(at[:1]) is None
    judged = [
        data.JudgmentRow(i, 0, "train", "ann", "human", "a", "a", 1000, moment) for i, moment in enumerate(at)
    ]
    judged += [
        data.JudgmentRow(9, 0, "train", "ann", "human", "skip", "a", 50, T0),
        data.JudgmentRow(10, 0, "train", "bot", "simulated", "a", "a", 1, T0),
    ]
    assert data.decisions_per_hour(judged) == {"ann": {T0: 4, T0 + timedelta(hours=1): 2}}
    assert data.decide_seconds(judged) == {"ann": [1.0] * 6}, "skips and simulated annotators left out"
    assert plots.throughput_plot(data.decisions_per_hour(judged))[:4] == b"\x89PNG"
    assert plots.decide_time_plot(data.decide_seconds(judged))[:4] == b"\x89PNG"
    assert plots.throughput_plot({"ann": {T0: 1}})[:4] == b"\x89PNG", (
        "one hour: a few ticks, not days of them"
    )


def test_loss_curve_keeps_the_training_line_whole_and_draws_eval_as_points():
    metrics = [{"step": s, "loss": 0.7 - s / 100} for s in (5, 10, 15, 20)]
    metrics.insert(2, {"step": 10, "eval_loss": 0.66, "eval_rewards/accuracies": 0.6})
    metrics.append({"step": 20, "eval_loss": 0.55})
    loss_ax, _ = loss_curve_figure(metrics).axes
    train, validation = loss_ax.lines
    assert list(train.get_xdata()) == [5, 10, 15, 20], "no gap at the eval step"
    assert list(validation.get_xdata()) == [10, 20] and validation.get_marker() == "o"


def test_win_rates_come_from_the_report_per_kind(tmp_path):
    report = tmp_path / "report.json"
    assert data.read_report(report) is None
    comparison = {"model": "round-1", "baseline": "base", "win_rate": 0.68, "ci95": [0.54, 0.79]}
    comparison |= {"items": 25, "n": 50, "p_value": 0.01}
    groups = {"human": {"comparisons": [comparison]}, "simulated": {"comparisons": []}}
    report.write_text(json.dumps({"generated_at": "2026-12-01T10:00:00", "groups": groups}))
    (row,) = data.win_rate_rows(data.read_report(report))
    assert row["annotators"] == "human" and row["win rate"] == 0.68 and row["95% low"] == 0.54
    assert row["items"] == 25 and row["judgments"] == 50


@pytest.mark.usefixtures("app_env")
def test_compare_with_only_base_says_so(engine):
    with session_scope(engine, write=True) as session:
        get_or_create_version(session, "base", VersionKind.base, "tiny")
    admin = add_annotator(engine, "root", Role.admin)
    at = page_as(_compare_script, User(id=admin, name="root", role=Role.admin))
    assert "Only `base` so far" in at.info[0].value
    assert not at.button, "nothing to generate with a single version"


@pytest.fixture(scope="module")
def random_adapter(tmp_path_factory) -> str:
    from models.catalog import TINY_DIR
    from testkit.demo_adapter import save_random_adapter

    return str(save_random_adapter(TINY_DIR, tmp_path_factory.mktemp("adapter") / "lora", seed=1))


def _click(at: AppTest, label: str, timeout: float = 180) -> AppTest:
    next(b for b in at.button if b.label == label).click().run(timeout=timeout)
    assert not at.exception, at.exception
    return at


@pytest.mark.slow
@pytest.mark.usefixtures("app_env")
def test_compare_is_a_blind_arena_whose_votes_are_eval_judgments(engine, random_adapter):
    with session_scope(engine, write=True) as session:
        base = get_or_create_version(session, "base", VersionKind.base, "tiny")
        get_or_create_version(
            session,
            "round-1",
            VersionKind.adapter,
            "tiny",
            adapter_path=random_adapter,
            parent_id=base.id,
        )
    admin = add_annotator(engine, "root", Role.admin)
    at = page_as(_compare_script, User(id=admin, name="root", role=Role.admin))
    assert at.multiselect[0].value == ["base", "round-1"]
    at.selectbox[0].select("youtube-title")
    at.text_area[0].input("How I built a treehouse in one weekend")
    _click(at, "Generate")  # a form: the typed text arrives with the first click
    assert [c.value for c in at.caption if c.value in ("A", "B")] == ["A", "B"], "blind: sides only"
    assert not any("base" in c.value for c in at.caption)
    _click(at, "B is better", timeout=30)
    with session_scope(engine) as session:
        (judgment,) = session.exec(select(Judgment)).all()
        comparison = session.get(Comparison, judgment.comparison_id)
        prompt = session.get(Prompt, comparison.prompt_id)
        a, b = (
            session.get(Candidate, comparison.candidate_a_id),
            session.get(Candidate, comparison.candidate_b_id),
        )
        names = {c.id: session.get(ModelVersion, c.model_version_id).name for c in (a, b)}
    assert comparison.purpose == Purpose.eval and prompt.split == Split.eval and prompt.source == "compare"
    assert prompt.raw == "How I built a treehouse in one weekend" and prompt.template == "youtube-title"
    assert a.seed != b.seed, "each version samples with its own seed"
    right = b if judgment.left == "a" else a
    assert judgment.choice == (Choice.b if right is b else Choice.a), "B (right) is better, in a/b terms"
    revealed = [c.value for c in at.caption if c.value.startswith(("A: ", "B: "))]
    assert revealed == [f"A: {names[(a if right is b else b).id]}", f"B: {names[right.id]}"]
    assert "Saved to the eval pool" in at.success[0].value

    at.text_area(key="compare_next").input("Make it shorter")
    _click(at, "Send")
    _click(at, "Tie", timeout=30)
    with session_scope(engine) as session:
        second = session.exec(select(Judgment).order_by(Judgment.id.desc())).first()
        follow = session.get(Prompt, session.get(Comparison, second.comparison_id).prompt_id)
    assert second.choice == Choice.tie and follow.text == "Make it shorter"
    assert [m["role"] for m in follow.history] == ["user", "assistant"]
    assert follow.history[1]["content"] == right.text, "the conversation goes on from the chosen answer"


def test_agreement_does_not_depend_on_which_candidate_was_stored_first():
    """The same decisions, with some pairs stored the other way round (a and b swapped), give the same
    κ and α: labels are oriented by the pair's canonical first candidate, not by storage order."""
    decisions = [(1, "first", "first"), (2, "first", "second"), (3, "second", "second"), (4, "first", "tie")]
    decisions += [(5, "second", "second"), (6, "first", "first"), (7, "second", "first")]

    def stored(flipped: set[int]) -> list[data.JudgmentRow]:
        out = []
        for cid, *labels in decisions:
            for who, label in zip(("x", "y"), labels, strict=True):
                a_first = cid not in flipped
                choice = label if label == "tie" else ("a" if (label == "first") == a_first else "b")
                out.append(data.JudgmentRow(cid, 0, "eval", who, "human", choice, "a", None, T0, a_first))
        return out

    plain, swapped = stored(set()), stored({2, 3, 5})
    assert [j.choice for j in plain] != [j.choice for j in swapped]
    assert data.pairwise_kappa(plain) == data.pairwise_kappa(swapped)
    assert data.overall_alpha(plain) == data.overall_alpha(swapped)
    xs, ys = [d[1] for d in decisions], [d[2] for d in decisions]
    assert data.pairwise_kappa(plain)[0]["κ"] == pytest.approx(cohen_kappa(xs, ys))
