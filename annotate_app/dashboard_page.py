"""The Dashboard (admins only): how labelling goes, who labels how, whether training helps.

Figures are the report's own (``evaluation.plots``, ``training.plots``: matplotlib, points with Wilson
bars, a dashed 50% line), so the Dashboard and ``prefloop report`` never draw the same thing two ways.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from annotate_app import dashboard_data as data
from annotate_app.context import config, engine
from annotate_app.guard import require_admin
from evaluation import plots
from training.plots import PANELS, loss_curve_png

# Drawing a figure takes ~0.1-0.2 s; the same numbers give the same PNG, so reruns reuse it.
_throughput_png = st.cache_data(plots.throughput_plot, show_spinner=False, max_entries=8)
_decide_png = st.cache_data(plots.decide_time_plot, show_spinner=False, max_entries=8)
_loss_png = st.cache_data(loss_curve_png, show_spinner=False, max_entries=32)

PERCENT = st.column_config.NumberColumn(format="percent")


def _table(rows: list[dict], **column_config) -> None:
    """A table as wide as the page; on a phone it scrolls sideways with its first column pinned."""
    frame = pd.DataFrame(rows)
    first = frame.columns[0]
    column_config.setdefault(first, st.column_config.Column(pinned=True))
    st.dataframe(frame, hide_index=True, width="stretch", column_config=column_config)


def _rounds(pairs, judgments) -> None:
    st.subheader("Rounds")
    table = data.round_table(pairs, judgments, config().annotate)
    if not table:
        st.info("No pairs yet: run `prefloop generate` (or `prefloop demo`).")
        return
    _table(table, coverage=st.column_config.ProgressColumn("coverage", format="percent"))


SPEED_COLUMNS = ("annotator", "kind", "decisions", "skips", "median s", "decisions / h")
HABIT_COLUMNS = (
    "annotator",
    "tie rate",
    "both-bad rate",
    "left-choice rate",
    "left p-value",
    "mean κ vs others",
)


def _annotators(judgments) -> None:
    st.subheader("Annotators")
    table = data.annotator_table(judgments)
    if not table:
        st.info("No judgments yet.")
        return
    # two narrower tables rather than one wide one: every column stays on screen at 1280 px
    _table(
        [{k: row[k] for k in SPEED_COLUMNS} for row in table],
        **{
            "median s": st.column_config.NumberColumn(format="%.1f", help="median seconds per decision"),
            "decisions / h": st.column_config.NumberColumn(
                format="%.0f", help="while labelling: pauses over 10 minutes are left out"
            ),
        },
    )
    _table(
        [{k: row[k] for k in HABIT_COLUMNS} for row in table],
        **{
            "tie rate": PERCENT,
            "both-bad rate": PERCENT,
            "left-choice rate": PERCENT,
            "left p-value": st.column_config.NumberColumn(format="%.3g", help="exact binomial test vs 50%"),
            "mean κ vs others": st.column_config.NumberColumn(format="%.2f"),
        },
    )
    st.caption(
        "Left-choice rate: share of decisive judgments (A or B better) that picked the left side; "
        "a small p-value means position bias. Skips are not decisions."
    )
    per_hour, seconds = data.decisions_per_hour(judgments), data.decide_seconds(judgments)
    if per_hour or seconds:
        throughput_col, decide_col = st.columns(2)
        if per_hour:
            throughput_col.image(_throughput_png(per_hour), width="stretch")
        if seconds:
            decide_col.image(_decide_png(seconds), width="stretch")
        st.caption("Human annotators only (simulated ones label thousands of pairs a second).")


def _agreement(judgments) -> None:
    st.subheader("Agreement")
    alpha, shared = data.overall_alpha(judgments)
    if shared == 0:
        st.caption("No pair has two decisions yet (eval pairs are labelled twice).")
        return
    alpha_text = "undefined (everyone gave the same label)" if alpha is None else f"{alpha:.2f}"
    st.metric(f"Krippendorff's α over {shared} shared pairs", alpha_text)
    _table(
        data.pairwise_kappa(judgments),
        agreement=PERCENT,
        κ=st.column_config.NumberColumn("Cohen's κ", format="%.2f"),
    )


def _training() -> None:
    st.subheader("Training runs")
    runs = data.training_runs(engine())
    if not runs:
        st.info("No training run yet: `make train-round` trains the first adapter.")
        return
    for run in reversed(runs):
        started = f"{run.started_at:%Y-%m-%d %H:%M}"
        title = f"Run {run.id} · round {run.round_id} · {run.status.value} · started {started}"
        with st.expander(title, expanded=run is runs[-1]):
            if run.metrics:  # one figure per column: side by side on a laptop, stacked on a phone
                for panel, col in zip(PANELS, st.columns(len(PANELS)), strict=True):
                    col.image(_loss_png(run.metrics, f"run {run.id}", (panel,)), width="stretch")
            else:
                st.caption("No metrics logged yet.")
            if run.error:
                st.text(run.error)


def _win_rates() -> None:
    st.subheader("Win rates")
    folder = config().var_dir / "report"
    report = data.read_report(folder / "report.json")
    rows = data.win_rate_rows(report) if report else []
    if not rows:
        st.info("No report yet: `make report` writes one after eval pairs are judged.")
        return
    figure = folder / "win_rates.png"
    if figure.is_file():  # the report's own figure: points, Wilson bars, a dashed 50% line
        st.image(figure.read_bytes(), width="stretch")
    _table(
        rows,
        **{
            "win rate": st.column_config.NumberColumn(format="%.2f"),
            "95% low": st.column_config.NumberColumn(format="%.2f"),
            "95% high": st.column_config.NumberColumn(format="%.2f"),
            "p (sign)": st.column_config.NumberColumn(format="%.3g"),
        },
    )
    st.caption(
        f"From the latest `prefloop report` ({report.get('generated_at') or 'time unknown'}); the unit is "
        f"{report.get('unit') or 'the item'}, ties count ½, intervals are Wilson 95%. "
        "`make report` refreshes it."
    )


def render() -> None:
    require_admin("Dashboard")
    st.title("Dashboard")
    pairs, judgments = data.load_rows(engine())
    _rounds(pairs, judgments)
    _annotators(judgments)
    _agreement(judgments)
    _training()
    _win_rates()
