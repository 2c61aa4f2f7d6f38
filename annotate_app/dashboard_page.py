"""The Dashboard (admins only): how labelling goes, who labels how, whether training helps."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from annotate_app import dashboard_data as data
from annotate_app.context import config, engine
from annotate_app.guard import require_admin


def _rounds(pairs, judgments) -> None:
    st.subheader("Rounds")
    table = data.round_table(pairs, judgments, config().annotate)
    if not table:
        st.info("No pairs yet: run `prefloop generate` (or `prefloop demo`).")
        return
    st.dataframe(
        pd.DataFrame(table),
        hide_index=True,
        column_config={"coverage": st.column_config.ProgressColumn("coverage", format="percent")},
    )


def _annotators(judgments) -> None:
    st.subheader("Annotators")
    table = data.annotator_table(judgments)
    if not table:
        st.info("No judgments yet.")
        return
    percent = st.column_config.NumberColumn(format="percent")
    st.dataframe(
        pd.DataFrame(table),
        hide_index=True,
        column_config={
            "median s": st.column_config.NumberColumn(format="%.1f"),
            "tie rate": percent,
            "both-bad rate": percent,
            "left-choice rate": percent,
            "left p-value": st.column_config.NumberColumn(format="%.3g", help="exact binomial test vs 50%"),
            "mean κ vs others": st.column_config.NumberColumn(format="%.2f"),
        },
    )
    st.caption(
        "Left-choice rate: share of decisive judgments (A or B better) that picked the left side; "
        "a small p-value means position bias. Skips are not decisions."
    )
    alpha, shared = data.overall_alpha(judgments)
    if shared == 0:
        st.caption("Agreement: no pair has two decisions yet (eval pairs are labelled twice).")
        return
    alpha_text = "undefined (everyone gave the same label)" if alpha is None else f"{alpha:.2f}"
    st.metric(f"Krippendorff's α over {shared} shared pairs", alpha_text)
    kappas = data.pairwise_kappa(judgments)
    st.dataframe(
        pd.DataFrame(kappas),
        hide_index=True,
        column_config={
            "agreement": st.column_config.NumberColumn(format="percent"),
            "κ": st.column_config.NumberColumn("Cohen's κ", format="%.2f"),
        },
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
            curves = data.loss_curve(run.metrics)
            if curves:
                st.line_chart(pd.DataFrame(curves).sort_index(), x_label="step")
            else:
                st.caption("No metrics logged yet.")
            if run.error:
                st.text(run.error)


def _win_rates() -> None:
    st.subheader("Win rate history")
    rows = data.win_rate_history(config().var_dir / "report" / "report.json")
    if not rows:
        st.info("No report yet: `make report` writes one after eval pairs are judged.")
        return
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    st.bar_chart(pd.DataFrame(rows).set_index("model")["win rate"], y_label="win rate vs baseline")


def render() -> None:
    require_admin("Dashboard")
    st.title("Dashboard")
    pairs, judgments = data.load_rows(engine())
    _rounds(pairs, judgments)
    _annotators(judgments)
    _training()
    _win_rates()
