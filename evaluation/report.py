"""``prefloop report``: gather eval judgments and samples, analyse, write report.md/.html/.json + PNGs.

The folder is written to a staging directory and swapped into place, so a reader never sees half a
report. report.json is a contract other tools read (see README "report"); report.md and report.html
are rendered from the same blocks, the HTML with its plots embedded so it travels as one file.
"""

from __future__ import annotations

import base64
import html
import json
import shutil
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, select

from core.config import ReportConfig
from evaluation.analysis import ORIENTATION, Bias, Group, JudgmentRecord, ReportData, VersionInfo, analyse
from evaluation.health import Health, Sample, drawn_per_prompt, output_health
from evaluation.plots import bradley_terry_plot, length_plot, win_rate_plot
from storage.db import session_scope
from storage.files import atomic_replace_dir
from storage.judgments import current_eval_judgments
from storage.models import (
    Candidate,
    Comparison,
    ModelVersion,
    Prompt,
    Purpose,
    Split,
    TrainingRun,
    VersionKind,
    utcnow,
)
from storage.templates import asks_for_title
from storage.versions import round_of

KIND_TITLES = {
    "human": "Human annotators",
    "simulated": "Simulated annotators",
    "imported": "Imported judgments",
}


@dataclass
class EvalData:
    records: list[JudgmentRecord]
    versions: dict[str, VersionInfo]
    samples: dict[str, list[Sample]]  # per model version: its candidates in eval pairs
    drawn: dict[str, dict[int, int]]  # per model version and prompt id: samples generated (see health)
    excluded: list[str]  # one sentence per group of judgments left out of the figures


def _round_of(version: ModelVersion, run_rounds: dict[int, int | None]) -> int | None:
    if version.kind == VersionKind.base:
        return 0
    if version.training_run_id is not None and run_rounds.get(version.training_run_id) is not None:
        return run_rounds[version.training_run_id]
    return round_of(version.name) if version.kind != VersionKind.external else None


def gather(session: Session, title_templates: tuple[str, ...] = ()) -> EvalData:
    """Current, non-skip judgments of eval pairs on eval-split prompts (superseded revisions ignored)."""
    version_rows = {v.id: v for v in session.exec(select(ModelVersion))}
    run_rounds = {r.id: r.round_id for r in session.exec(select(TrainingRun))}
    versions = {
        v.name: VersionInfo(v.name, v.kind.value, _round_of(v, run_rounds)) for v in version_rows.values()
    }
    records, on_train = [], 0
    for ej in current_eval_judgments(session):
        if ej.prompt.split != Split.eval:
            on_train += 1
            continue
        records.append(
            JudgmentRecord(
                comparison_id=ej.judgment.comparison_id,
                prompt_key=ej.prompt.normalized_hash,
                annotator=ej.annotator.name,
                annotator_kind=ej.annotator.kind.value,
                choice=ej.judgment.choice.value,
                left=ej.judgment.left,
                model_a=ej.version_a.name,
                model_b=ej.version_b.name,
                text_a=ej.candidate_a.text,
                text_b=ej.candidate_b.text,
            )
        )
    excluded = (
        [f"{on_train} eval judgments on train-split prompts left out (the policy trains on those prompts)."]
        if on_train
        else []
    )
    samples, drawn = _health_samples(session, version_rows, title_templates)
    return EvalData(records, versions, samples, drawn, excluded)


def _health_samples(
    session: Session, version_rows: dict[int, ModelVersion], title_templates: tuple[str, ...]
) -> tuple[dict[str, list[Sample]], dict[str, dict[int, int]]]:
    """Per model version, every sample it has on an eval prompt where it is in an eval pair (judged or
    not): all of its draws there, not only the ones the pair budget used, so that the distinct share
    (stored texts against ``sampling["n"]`` drawn) reads 100% for a model whose samples all differ even
    when a prompt gets fewer pairs than samples (120 pairs over 17 prompts: 8 of 10 samples)."""
    in_eval = (
        select(Comparison.candidate_a_id)
        .where(Comparison.purpose == Purpose.eval)
        .union(select(Comparison.candidate_b_id).where(Comparison.purpose == Purpose.eval))
    )
    paired = set(
        session.exec(select(Candidate.model_version_id, Candidate.prompt_id).where(Candidate.id.in_(in_eval)))
    )
    query = (
        select(Candidate, Prompt)
        .join(Prompt, Candidate.prompt_id == Prompt.id)
        .where(Prompt.split == Split.eval, Candidate.model_version_id.in_({v for v, _ in paired}))
    )
    samples: dict[str, list[Sample]] = defaultdict(list)
    sampling: dict[str, list[tuple[int, dict]]] = defaultdict(list)
    title_like: dict[int, bool] = {}
    for cand, prompt in session.exec(query):
        if (cand.model_version_id, cand.prompt_id) not in paired:
            continue
        name = version_rows[cand.model_version_id].name
        if prompt.id not in title_like:
            title_like[prompt.id] = asks_for_title(prompt.text, prompt.template, title_templates)
        samples[name].append(
            Sample(cand.prompt_id, cand.text, cand.finish_reason, prompt.text, title_like[prompt.id])
        )
        sampling[name].append((cand.prompt_id, cand.sampling))
    return dict(samples), {name: drawn_per_prompt(pairs) for name, pairs in sampling.items()}


@dataclass
class Report:
    data: ReportData
    plots: dict[str, bytes]  # file name → PNG


def build_report(engine: Engine, config: ReportConfig) -> Report:
    with session_scope(engine) as session:
        gathered = gather(session, config.title_templates)
    health: dict[str, Health] = {
        name: output_health(samples, config.length_band, gathered.drawn.get(name))
        for name, samples in gathered.samples.items()
    }
    data = analyse(gathered.records, gathered.versions, health, config, gathered.excluded)
    data.generated_at = utcnow().isoformat(timespec="seconds")
    lengths = {name: [len(s.text.strip()) for s in gathered.samples[name]] for name in data.health}
    any_titles = any(s.title_like for samples in gathered.samples.values() for s in samples)
    plots: dict[str, bytes] = {}
    with_pairs = {k: g for k, g in data.groups.items() if g.comparisons}
    if with_pairs:
        plots["win_rates.png"] = win_rate_plot(with_pairs)
    if data.bradley_terry:
        plots["bradley_terry.png"] = bradley_terry_plot(
            data.bradley_terry, data.annotator_kind, data.bradley_terry_scale
        )
    if lengths:
        plots["lengths.png"] = length_plot(lengths, config.length_band if any_titles else None, data.anchor)
    return Report(data, plots)


# --- rendering: one list of blocks, two renderers -----------------------------------------------------

Block = tuple  # ("h1"|"h2"|"h3"|"p", text) | ("list", [text]) | ("table", header, rows) | ("img", name, alt)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}"


def _defined(x: float | None) -> str:
    """A statistic that can be undefined (e.g. κ when everyone gave one label)."""
    return "undefined" if x is None else f"{x:.3f}"


def _ci(ci: list) -> str:
    return "-" if not ci or ci[0] is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def _num(x: float | None, fmt: str = ".3f") -> str:
    return "-" if x is None else format(x, fmt)


def _comparison_blocks(group: Group) -> list[Block]:
    comps = group.comparisons
    if not comps:
        return [("p", "No eval pair compared two different model versions.")]
    header = ["model", "baseline", "items", "item W-L-T", "win rate", "95% CI", "p (sign, items)"]
    header += ["judgments", "wins", "losses", "ties", "both bad"]
    rows = [
        [c.model, c.baseline, c.items, f"{c.item_wins}-{c.item_losses}-{c.item_ties}", _num(c.win_rate)]
        + [_ci(c.ci95), f"{c.p_value:.3g}", c.n, c.wins, c.losses, c.ties, c.both_bad]
        for c in comps
    ]
    per_annotator = [
        [c.model, c.baseline, name, a.n, a.wins, a.losses, a.ties + a.both_bad]
        + [_num(a.win_rate), _ci(a.ci95), f"{a.p_value:.3g}"]
        for c in comps
        for name, a in c.annotators.items()
    ]
    oriented = {c.oriented_by for c in comps}
    how = []
    if "round" in oriented:
        how.append("two prefloop rounds face newer against older (base is round 0)")
    if "rating" in oriented:
        which = "any other pair" if how else "each pair"
        how.append(f"{which} faces the higher Bradley-Terry rating against the lower")
    return [
        ("p", f"Each row is one pair of versions: {'; '.join(how)}."),
        ("table", header, rows),
        ("list", [c.conclusion for c in comps]),
        ("h3", "Per annotator"),
        (
            "table",
            [
                "model",
                "baseline",
                "annotator",
                "n",
                "wins",
                "losses",
                "ties+both bad",
                "win rate",
                "95% CI",
                "p",
            ],
            per_annotator,
        ),
    ]


def _per_model_blocks(group: Group) -> list[Block]:
    if not group.per_model:
        return []
    header = ["model", "rating", "opponents", "items", "judgments", "W-L-T", "win rate (judgments)"]
    header += ["win rate (items)", "95% CI (items)", "item majority W-L-T", "majority win rate"]
    rows = [
        [s.model, _num(s.rating, ".0f"), s.opponents, s.items, s.n, f"{s.wins}-{s.losses}-{s.ties}"]
        + [_num(s.win_rate), _num(s.item_win_rate), _ci(s.ci95)]
        + [
            f"{s.item_majority.wins}-{s.item_majority.losses}-{s.item_majority.ties}",
            _num(s.item_majority.win_rate),
        ]
        for s in group.per_model
    ]
    return [
        ("h3", "Per model (against all others, ties count ½)"),
        (
            "p",
            "Items are (prompt, opponent); the item majority counts an item for the model when most of its "
            "judgments on it went its way.",
        ),
        ("table", header, rows),
    ]


def _bt_blocks(group: Group) -> list[Block]:
    ratings = group.bradley_terry
    if not ratings:
        return [("p", "No battles between different model versions yet.")]
    rows = [
        [r.rank, name, "-" if r.round is None else r.round, f"{r.rating:.0f}"]
        + [f"[{r.ci95[0]:.0f}, {r.ci95[1]:.0f}]", r.items, r.battles]
        for name, r in ratings.items()
    ]
    return [
        ("p", group.bradley_terry_scale),
        ("table", ["rank", "model", "round", "rating", "bootstrap 95% CI", "items", "battles"], rows),
    ]


def _bias_blocks(title: str, bias: Bias) -> list[Block]:
    blocks: list[Block] = [("h3", title), ("p", bias.statement)]
    if bias.balance:
        blocks.append(("list", bias.balance))
    rows = [
        [name, b.n, _pct(b.share), _pct(b.adjusted_share), _ci(b.ci95), _num(b.p_value, ".3g")]
        for name, b in bias.annotators.items()
    ]
    if rows:
        header = ["annotator", "decisive", "raw share", "strength-adjusted", "95% CI", "p"]
        blocks.append(("table", header, rows))
    return blocks


def _agreement_blocks(group: Group) -> list[Block]:
    agreement = group.agreement
    blocks: list[Block] = [("h3", "Agreement"), ("p", agreement.statement)]
    if agreement.items and agreement.fleiss_kappa:
        fleiss = agreement.fleiss_kappa
        blocks.append(
            (
                "p",
                f"Fleiss' kappa = {_defined(fleiss.kappa)} on {fleiss.items} pairs with "
                f"{fleiss.raters_per_item} annotators each. Orientation: {agreement.orientation}.",
            )
        )
        rows = [
            [" & ".join(c.annotators), c.n, _pct(c.percent_agreement), _defined(c.kappa)]
            for c in agreement.cohen_kappa
        ]
        blocks.append(("table", ["annotator pair", "shared pairs", "agreement", "Cohen's kappa"], rows))
    return blocks


def _annotators(group: Group) -> str:
    count = len(group.annotators)
    return f"{count} annotator" + ("" if count == 1 else "s")


def _group_blocks(kind: str, group: Group, with_plot: bool) -> list[Block]:
    blocks: list[Block] = [
        (
            "h2",
            f"{KIND_TITLES.get(kind, kind)}: {group.judgments} judgments on {group.items} items by "
            f"{_annotators(group)}",
        ),
        ("p", " ".join(group.method)),
        ("h3", "Head to head"),
        *_comparison_blocks(group),
        *_per_model_blocks(group),
        ("h3", "Bradley-Terry leaderboard"),
        *_bt_blocks(group),
    ]
    if with_plot:
        blocks.append(
            ("img", "bradley_terry.png", "Bradley-Terry ratings, highest first, bootstrap intervals")
        )
    blocks += _bias_blocks(
        "Position bias (does the left side win more than strength explains?)", group.position_bias
    )
    blocks += _bias_blocks(
        "Length bias (does the longer candidate win more than strength explains?)", group.length_bias
    )
    blocks += _agreement_blocks(group)
    return blocks


def _win_rates_vs_anchor(data: ReportData) -> dict[str, str]:
    """Each model's win rate against base, from the headline kind, else the first kind that has one."""
    out: dict[str, str] = {}
    for kind, group in data.groups.items():
        for comp in group.comparisons:
            if comp.baseline == data.anchor and comp.model not in out:
                label = "" if kind == data.annotator_kind else f" ({kind})"
                out[comp.model] = f"{comp.win_rate:.2f} {_ci(comp.ci95)}{label}"
    return out


def _health_blocks(data: ReportData) -> list[Block]:
    if not data.health:
        return [("h2", "Output health"), ("p", "No eval candidates yet.")]
    vs_base = _win_rates_vs_anchor(data)
    rows = []
    for name, h in data.health.items():
        iqr = "-" if h.iqr_chars is None else f"{h.iqr_chars[0]:.0f}-{h.iqr_chars[1]:.0f}"
        rows.append(
            [
                name,
                vs_base.get(name, "-"),
                h.samples,
                _num(h.median_chars, ".0f"),
                iqr,
                _pct(h.title_like_share),
            ]
            + [
                _pct(x)
                for x in (h.in_band_share, h.eot_share, h.distinct_share, h.on_topic_share, h.repeat_share)
            ]
        )
    band = next(iter(data.health.values())).band
    header = ["model", f"win rate vs {data.anchor or 'base'}", "samples", "median chars", "IQR", "title-like"]
    header += [f"titles in {band[0]}-{band[1]}", "end-of-turn", "distinct", "on topic", "degenerate"]
    return [
        ("h2", "Output health"),
        (
            "p",
            "Health of each model's eval outputs beside its win rate: a policy can win preferences by "
            "breaking itself. Title-like = answers to a title prompt (report.title_templates): only those "
            "get the length band and the strict repeat check (a doubled word); other answers are long-form, "
            "degenerate when over half of their word 3-grams repeat. Distinct = distinct outputs per prompt; "
            "on topic = shares a key word with the prompt's idea.",
        ),
        ("table", header, rows),
        ("img", "lengths.png", "Output length distribution of each model"),
    ]


def report_blocks(data: ReportData, plots: dict[str, bytes]) -> list[Block]:
    kind = data.annotator_kind
    blocks: list[Block] = [("h1", "prefloop evaluation report"), ("p", f"Generated {data.generated_at}.")]
    if data.flags:
        blocks += [("h2", "Warning: output health"), ("list", data.flags)]
    elif data.health:
        blocks.append(("p", "Output health: every model is within the configured bounds."))
    blocks += [("h2", "Headline"), ("p", data.headline)]
    if data.headline_rule:
        blocks.append(("p", f"Headline rule: {data.headline_rule}."))
    others = [k for k in data.groups if k != kind]
    if others:
        blocks.append(
            (
                "p",
                f"The figures below the headline come from {kind} annotators only; "
                f"{', '.join(others)} judgments are reported in their own sections and never pooled.",
            )
        )
    blocks.append(("img", "win_rates.png", "Win rates with Wilson 95% intervals over items"))
    for group_kind, group in data.groups.items():
        blocks += _group_blocks(
            group_kind, group, with_plot=group_kind == kind and "bradley_terry.png" in plots
        )
    blocks += _health_blocks(data)
    sources = [f"{KIND_TITLES.get(k, k)}: {' '.join(g.method)}" for k, g in data.groups.items()] or [
        "No judgments yet."
    ]
    blocks += [
        ("h2", "Method"),
        (
            "list",
            [
                *sources,
                *data.excluded,
                f"Unit of inference: the {data.unit}; {data.items} items in the headline group. Several "
                "judgments of one item (raters, samples) are one observation, not several.",
                "Win rate: the mean over items of each item's score (win 1, loss 0, tie or both-bad ½); "
                f"p-value and interval: {data.test}. Per-judgment counts are shown beside.",
                "Power: extra items for 80% power at alpha 0.05 if the true win rate equals the observed "
                "one (normal approximation, arcsine effect size).",
                "Bradley-Terry: logistic fit of all battles, ties as half; "
                + (next(iter(data.groups.values())).bradley_terry_scale if data.groups else ""),
                "Position and length bias: a left-side (longer-candidate) term in the Bradley-Terry fit of "
                "decisive judgments, so the models' strengths are held fixed; interval and p from the "
                "per-item (cluster-robust) standard error; not estimated when one model always sat on one "
                "side.",
                "Agreement: " + ORIENTATION + ".",
            ],
        ),
    ]
    return [b for b in blocks if b[0] != "img" or b[1] in plots]


def _md_cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def render_markdown(blocks: list[Block]) -> str:
    out = []
    for block in blocks:
        tag = block[0]
        if tag in ("h1", "h2", "h3"):
            out.append(f"{'#' * int(tag[1])} {block[1]}")
        elif tag == "p":
            out.append(block[1])
        elif tag == "list":
            out.append("\n".join(f"- {item}" for item in block[1]))
        elif tag == "table":
            header, rows = block[1], block[2]
            lines = ["| " + " | ".join(map(_md_cell, header)) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in rows]
            out.append("\n".join(lines))
        elif tag == "img":
            out.append(f"![{block[2]}]({block[1]})")
    return "\n\n".join(out) + "\n"


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}"
    "table{border-collapse:collapse;margin:.5rem 0 1rem}td,th{border:1px solid #ccc;padding:.25rem .5rem;"
    "text-align:right;white-space:nowrap}th{background:#f3f3f3;white-space:normal}"
    "td:first-child,th:first-child{text-align:left}"
    "img{max-width:100%}h2{border-bottom:1px solid #ddd;margin-top:2rem}"
)


def render_html(blocks: list[Block], plots: dict[str, bytes]) -> str:
    """One self-contained page: the PNGs are embedded as base64 data URIs."""
    esc = html.escape
    body = []
    warned = False
    for block in blocks:
        tag = block[0]
        if tag in ("h1", "h2", "h3"):
            warned = block[1].startswith("Warning")
            body.append(f"<{tag}>{esc(block[1])}</{tag}>")
        elif tag == "p":
            body.append(f"<p>{esc(block[1])}</p>")
        elif tag == "list":
            style = ' style="color:#b00020;font-weight:600"' if warned else ""
            body.append(f"<ul{style}>" + "".join(f"<li>{esc(i)}</li>" for i in block[1]) + "</ul>")
        elif tag == "table":
            head = "".join(f"<th>{esc(str(h))}</th>" for h in block[1])
            rows = "".join(
                "<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>" for row in block[2]
            )
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif tag == "img":
            data = base64.b64encode(plots[block[1]]).decode("ascii")
            body.append(f'<p><img alt="{esc(block[2])}" src="data:image/png;base64,{data}"></p>')
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>prefloop evaluation report</title>'
        f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>\n"
    )


def write_report(engine: Engine, out_dir: Path, config: ReportConfig) -> ReportData:
    """Build everything, write it into a staging folder, then swap the folder in; returns report.json data."""
    report = build_report(engine, config)
    blocks = report_blocks(report.data, report.plots)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; the report is meant to be shared
        (staging / "report.json").write_text(
            json.dumps(report.data.to_json(), indent=2, ensure_ascii=False) + "\n", "utf-8"
        )
        (staging / "report.md").write_text(render_markdown(blocks), "utf-8")
        (staging / "report.html").write_text(render_html(blocks, report.plots), "utf-8")
        for name, png in report.plots.items():
            (staging / name).write_bytes(png)
        atomic_replace_dir(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return report.data
