"""Output-health figures and the sentences that flag a broken model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.config import ReportConfig
from core.words import is_degenerate, is_on_topic
from evaluation.health import Sample, _past, drawn_per_prompt, flags, output_health
from evaluation.plots import MAX_BINS, length_bins
from storage.templates import asks_for_title

TEMPLATE = (
    "Given the YouTube video idea write an engaging title.\n\n**Video Idea**: {idea}\n\n"
    "**Additional Guidance**:\n- Title should be between 30 and 75 characters long\n"
    "- Only return the title idea, nothing else!"
)
PROMPT_1 = TEMPLATE.format(idea="Fine-tuning LLMs with human preferences")
PROMPT_2 = TEMPLATE.format(idea="Baking sourdough bread at home")


def test_degenerate_repeats():
    assert is_degenerate("5 Steps to 5 Steps in 30 Minutes")  # the broken DPO model's title (NOTES)
    assert is_degenerate("Python tips tips for beginners")
    assert not is_degenerate("Step by Step Guide to Fine-Tuning LLMs")
    assert not is_degenerate("How I Fine-Tuned an LLM on My Own Preferences")
    assert not is_degenerate("")


def test_on_topic_uses_the_video_idea_line():
    assert is_on_topic("Tuning an LLM to Your Taste", PROMPT_1)
    # "title", "engaging" come from the template, not the idea: they do not count
    assert not is_on_topic("An Engaging Title About Nothing", PROMPT_1)
    # without the template line the whole prompt's key words count
    assert is_on_topic("Sourdough for beginners", "Write about sourdough starters")
    assert is_on_topic("anything", "the of and") is None  # nothing to overlap with


def test_output_health_hand_values():
    samples = [
        Sample(1, "How I Fine-Tuned an LLM on My Own Preferences", "stop", PROMPT_1),  # 45 chars
        Sample(1, "How I Fine-Tuned an LLM on My Own Preferences", "stop", PROMPT_1),  # duplicate
        Sample(1, "5 Steps to 5 Steps in 30 Minutes", "length", PROMPT_1),  # 32, degenerate, off topic
        Sample(2, "Sourdough", "stop", PROMPT_2),  # 9 chars: below the band
        Sample(2, "My First Loaf of Homemade Sourdough Bread, Start to Finish", None, PROMPT_2),  # 58
    ]
    h = output_health(samples, band=(30, 75))
    assert h.samples == 5
    assert h.median_chars == 45
    assert h.iqr_chars == (32, 45)  # inclusive quartiles of 9, 32, 45, 45, 58
    assert h.in_band_share == pytest.approx(4 / 5)
    assert h.eot_share == pytest.approx(3 / 4)  # the unknown finish reason is left out
    assert h.distinct_share == pytest.approx((2 / 3 + 2 / 2) / 2)
    assert h.on_topic_share == pytest.approx(4 / 5)
    assert h.repeat_share == pytest.approx(1 / 5)


def test_distinct_share_counts_duplicates_dropped_by_storage():
    """Storage keeps one row per distinct text: 2 stored of 5 drawn is 40% distinct, not 100%."""
    stored = [Sample(7, "Fine-Tuning LLMs at Home", "stop"), Sample(7, "My LLM Fine-Tuning Diary", "stop")]
    assert output_health(stored).distinct_share == 1.0
    assert output_health(stored, drawn={7: 5}).distinct_share == pytest.approx(0.4)


def test_output_health_of_nothing():
    h = output_health([])
    assert h.samples == 0
    assert h.median_chars is None and h.eot_share is None and h.distinct_share is None


def _healthy(n: int = 10) -> list[Sample]:
    return [Sample(i, f"Fine-Tuning LLMs on Preferences, Lesson {i:02d}", "stop", PROMPT_1) for i in range(n)]


def test_flags_a_broken_model_in_words():
    bounds = ReportConfig()
    base = output_health(_healthy())
    broken = output_health(
        [Sample(i % 2, "5 Steps to 5 Steps", "length" if i % 3 else "stop", PROMPT_2) for i in range(10)]
    )
    found = flags(broken, base, bounds, model="round-2")
    text = " ".join(found)
    assert len(found) == 4, found
    assert all(line.startswith("round-2: ") for line in found)
    assert "end-of-turn" in text and "distinct" in text and "repeat" in text
    assert "median length 18 characters against 42 for base (-57%" in text
    assert "key word" not in text, "0 of 10 vs 10 of 10 on topic: the ratio's interval still reaches 0.7"


def _topical(on: int, off: int) -> list[Sample]:
    """``on`` titles about the video idea and ``off`` about something else, all distinct and clean."""
    return [
        Sample(i, f"Fine-Tuning LLMs on Preferences, Lesson {i:03d}", "stop", PROMPT_1) for i in range(on)
    ] + [Sample(on + i, f"A Weekend in the Mountains, Part {i:03d}", "stop", PROMPT_1) for i in range(off)]


def test_topic_drift_is_flagged_only_when_the_data_rule_out_the_bound():
    """The guard compares two estimated shares: a dip within sampling error is not a drift."""
    bounds = ReportConfig()  # at least 70% of base's on-topic share
    base = output_health(_topical(34, 66))
    noisy = output_health(_topical(20, 70))  # 22% vs 34%: ratio 0.65, below the bound, interval 0.41-1.05
    assert flags(noisy, base, bounds) == []
    drifted = output_health(_topical(10, 90))  # 10% vs 34%: interval 0.15-0.56
    (line,) = flags(drifted, base, bounds, model="round-2")
    assert line.startswith("round-2: 10% of outputs share a key word") and "95% CI up to 0.5" in line


def test_healthy_model_has_no_flags_and_base_is_not_compared():
    bounds = ReportConfig()
    base = output_health(_healthy())
    assert flags(output_health(_healthy()), base, bounds) == []
    short = output_health([Sample(i, "Fine-tuning LLMs", "stop", PROMPT_1) for i in range(10)])
    assert flags(short, None, bounds) == []  # no base: length and topic are not judged
    assert len(flags(short, base, bounds)) == 1


def _ends(cut: int, n: int) -> list[Sample]:
    return [Sample(i, f"Fine-tuning LLMs, part {i}", "length" if i < cut else "stop") for i in range(n)]


def _loops(looping: int, n: int) -> list[Sample]:
    return [
        Sample(i, "5 Steps to 5 Steps" if i < looping else f"Lesson {i} of LLMs", "stop") for i in range(n)
    ]


def test_bounds_are_configurable():
    h = output_health(_ends(20, 100))
    assert (h.eot_share, h.eot_n) == (pytest.approx(0.8), 100)
    (line,) = flags(h, None, ReportConfig(min_eot_rate=0.9))  # Wilson 95%: 0.71-0.87
    assert line.startswith("model: 80% of outputs end at the end-of-turn token (95% CI up to 87%)")
    assert flags(h, None, ReportConfig(min_eot_rate=0.85)) == []  # the interval reaches 0.85


def test_clean_endings_and_repeats_are_flagged_only_when_the_interval_is_past_the_bound():
    """Base SmolLM2 ends ~90% of its titles cleanly: 88% of 170 is sampling error, 76% is not."""
    bounds = ReportConfig()  # at least 90% clean endings, at most 10% repeats
    assert flags(output_health(_ends(20, 170)), None, bounds) == []  # 88%: CI 0.83-0.92
    (line,) = flags(output_health(_ends(41, 170)), None, bounds)  # 76%: CI 0.69-0.81
    assert "76% of outputs end" in line and "up to 82%" in line
    assert flags(output_health(_loops(20, 170)), None, bounds) == []  # 12% repeat: CI 0.08-0.17
    (line,) = flags(output_health(_loops(40, 170)), None, bounds)  # 24%: CI 0.18-0.30
    assert "24% of outputs repeat" in line and "95% CI from 18%" in line


def test_drawn_per_prompt_reads_the_samples_asked_for_not_the_rows_stored():
    stored = [(1, {"n": 5}), (1, {"n": 5}), (2, {"n": 3}), (3, None), (4, {"temperature": 1.0})]
    assert drawn_per_prompt(stored) == {1: 5, 2: 3}


DPO_EN = Path(__file__).resolve().parent.parent / "data/llamafactory-demo/dpo_en_demo.json"


def _chat_answers() -> list[Sample]:
    """Real long-form chat answers (LLaMA-Factory's demo DPO set: 300 prompts, median ~1,400 characters)."""
    rows = json.loads(DPO_EN.read_text(encoding="utf-8"))
    return [
        Sample(k, row[side]["value"], None, row["conversations"][-1]["value"], title_like=False)
        for k, row in enumerate(rows)
        for side in ("chosen", "rejected")
    ]


def test_healthy_long_answers_raise_no_warning():
    answers = _chat_answers()
    health = output_health(answers)
    assert health.median_chars > 1000 and health.title_like_share == 0.0
    assert health.in_band_share is None  # the title band means nothing here
    assert health.repeat_share == 0.0
    assert sum(is_degenerate(s.text, title_like=True) for s in answers) > 300  # what the title rule said
    assert flags(health, output_health(answers), ReportConfig()) == []


def test_a_looping_long_answer_is_degenerate():
    loop = "To bake bread you need flour. " + "Mix the flour and water and wait. " * 12
    assert is_degenerate(loop, title_like=False)
    prose = "Mix the flour and water, then wait an hour. Knead it well and shape a round loaf before baking."
    assert not is_degenerate(prose + " Mix the flour again.", title_like=False)  # a repeated phrase is fine


def test_title_prompts_are_recognised_by_template_name_or_text():
    assert asks_for_title(PROMPT_1, None, ("youtube-title",))  # plain text written from the template
    assert asks_for_title("anything", "youtube-title", ("youtube-title",))
    assert not asks_for_title("Explain DPO in two paragraphs.", None, ("youtube-title",))
    assert not asks_for_title(PROMPT_1, None, ())  # no title templates: everything is long-form


def test_length_bins_follow_the_range():
    assert len(length_bins([40, 52, 61, 75], (30, 75))) < 40  # titles: a few-character bins
    lengths = list(range(0, 3800, 7))  # long answers: the old fixed 5-character bins made 760 of them
    long = length_bins(lengths, None)
    assert 5 <= len(long) - 1 <= MAX_BINS and long[-1] >= max(lengths)


def test_a_share_just_under_its_bound_does_not_read_as_the_bound():
    assert _past(0.899, 0.9) == "89.9%"  # not "90% ... below the bound of 90%"
    assert _past(0.897, 0.95) == "90%" and _past(0.104, 0.1) == "10.4%"
