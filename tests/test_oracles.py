"""Built-in oracles reward what their docs say; load_oracle resolves every spec form or says what is wrong."""

from __future__ import annotations

import random
import sys

import pytest

from core.errors import PrefloopError
from core.words import idea_of, key_words
from labelling.oracles import (
    BUILTIN,
    band_distance,
    checked_verdict,
    clean_title,
    keywords,
    length_band,
    load_oracle,
    number,
    shorter,
    title_faults,
    with_noise,
)

PROMPT = (
    "Given the YouTube video idea write an engaging title.\n\n**Video Idea**: fine-tuning LLMs\n\n"
    "**Additional Guidance**:\n- Title should be between 30 and 75 characters long\n"
    "- Only return the title idea, nothing else!"
)
IN_BAND_MIDDLE = "x" * 52
IN_BAND_EDGE = "x" * 31
TOO_LONG = "x" * 90
TOO_SHORT = "x" * 12


def test_length_band_prefers_inside_then_nearer_then_middle():
    assert (
        band_distance(TOO_LONG) == 15 and band_distance(TOO_SHORT) == 18 and band_distance(IN_BAND_EDGE) == 0
    )
    assert length_band(PROMPT, TOO_LONG, IN_BAND_EDGE) == "b"
    assert length_band(PROMPT, TOO_LONG, TOO_SHORT) == "a"  # 15 characters out beats 18
    assert length_band(PROMPT, IN_BAND_MIDDLE, IN_BAND_EDGE) == "a"
    assert length_band(PROMPT, "x" * 50, "x" * 54) == "tie"  # both within 4 of the middle's distance
    assert length_band(PROMPT, " " * 40 + "x" * 52, IN_BAND_MIDDLE) == "tie"  # whitespace does not count


def test_keywords_reads_the_idea_line_and_matches_word_forms():
    assert idea_of(PROMPT) == "fine-tuning LLMs"
    assert idea_of("Write a haiku about rain") == "Write a haiku about rain"
    assert key_words("Fine-tuning LLMs") == key_words("fine-tuned LLM")
    assert keywords(PROMPT, "How I Fine-Tuned an LLM", "10 Tips for Better Sleep") == "a"
    assert keywords(PROMPT, "Tips for LLMs", "Fine-Tune Your LLM") == "b"
    assert keywords(PROMPT, "Cooking pasta", "Sleep better") == "tie"
    assert keywords(PROMPT, "The guidance says: 30 and 75 characters", "Cooking") == "tie"  # idea only


def test_shorter_prefers_the_shorter_title_beyond_two_characters():
    assert shorter(PROMPT, "short title", "a much longer title") == "a"
    assert shorter(PROMPT, "x" * 40, "x" * 20) == "b"
    assert shorter(PROMPT, "x" * 40, "x" * 38) == "tie"


def test_number_prefers_a_title_with_a_number():
    assert number(PROMPT, "5 Steps to Fine-Tune LLMs", "Fine-Tune LLMs Step by Step") == "a"
    assert number(PROMPT, "Fine-Tuning Explained", "LLMs in 30 Minutes") == "b"
    assert number(PROMPT, "3 Tips", "7 Tricks") == "tie" and number(PROMPT, "Tips", "Tricks") == "tie"


def test_clean_title_counts_the_faults_a_person_sees_at_a_glance():
    clean = "Build A Resume Optimizer With AI"  # 32 chars, one line, no quotes, no word twice
    assert title_faults(clean) == []
    assert title_faults("The Lean Lying Lying Lying Machine Learning") == ["repeat"]
    assert title_faults('Fine-Tuning LLMs: "The Complete Guide"') == ["quotes"]
    assert title_faults("\u201cSmart\u201d Fine-Tuning for Real-World LLM Work") == ["quotes"]
    assert title_faults("Fine-Tuning LLMs, A Complete Guide\nIn this video we cover") == ["lines"]
    assert title_faults("LLMs") == ["length"]
    assert title_faults("Fine-Tuning LLMs: A Beginner's Guide") == []  # an apostrophe is not a quote
    assert title_faults("A Guide to LLMs and a Guide to RAG") == ["repeat"]  # one-letter words do not count
    assert clean_title(PROMPT, clean, "Fine-Tuning LLMs: 'The' Guide Guide") == "a"
    on_topic = "Fine-Tuning LLMs for Real-World Applications"
    assert clean_title(PROMPT, "LLMs", on_topic) == "b"
    assert clean_title(PROMPT, on_topic, "Fine-Tuning LLMs, A Practical Guide") == "tie"
    assert clean_title(PROMPT, clean, on_topic) == "b"  # clean, but not about fine-tuning LLMs


def test_clean_title_faults_a_label_a_copied_idea_and_a_title_off_the_topic():
    idea = "Fourier transform"
    assert title_faults("Title: The Fourier Transform, Visually Explained", idea) == ["label"]
    assert title_faults("**Video Idea**: Fourier transform", idea) == ["label", "copy"]
    assert title_faults("# Fourier Transform Intuition From Scratch", idea) == ["label"]
    assert title_faults("YouTube video idea: The Fourier Transform, Visually Explained", idea) == ["label"]
    assert title_faults("fourier TRANSFORM", idea) == ["length", "copy"]
    assert title_faults("The Ultimate Guide to Vegan Living at Home", idea) == ["topic"]
    assert title_faults("Fourier Transforms: Why Every Signal Is a Sum of Waves", idea) == []
    assert title_faults("Title: Fourier transform") == ["length", "label"]  # no idea given: no copy/topic
    prompt = "Write a title.\n**Video Idea**: Fourier transform"
    good = "Fourier Transforms, Visually Explained"
    assert clean_title(prompt, "**Video Idea**: Fourier transform", good) == "b"
    assert clean_title(prompt, "The Ultimate Guide to Vegan Living", good) == "b"


def test_built_ins_reward_different_things():
    long_on_topic = "Fine-Tuning LLMs: The Complete Beginner's Guide"  # 47 chars, 2 key words
    short_off_topic = "Cooking Pasta in 30 Minutes"  # 27 chars: below the band
    verdicts = {name: oracle(PROMPT, long_on_topic, short_off_topic) for name, oracle in BUILTIN.items()}
    assert verdicts == {
        "length-band": "a",
        "keywords": "a",
        "shorter": "b",
        "number": "b",
        "clean-title": "a",
    }
    mid_off_topic = "The Best Pasta Recipe You Will Ever Try At Home"  # 47 chars, no key word
    short_on_topic = "LLM fine-tuning, fast and simple"  # 32 chars
    assert length_band(PROMPT, mid_off_topic, short_on_topic) == "a"
    assert keywords(PROMPT, mid_off_topic, short_on_topic) == "b"


def test_noise_flips_about_p_of_decisive_answers_and_keeps_ties():
    rng = random.Random(1)
    noisy = with_noise(shorter, 0.2, rng)
    flips = sum(noisy(PROMPT, "ab", "abcdefg") == "b" for _ in range(5000))
    assert 0.18 < flips / 5000 < 0.22
    assert {noisy(PROMPT, "abc", "abd") for _ in range(200)} == {"tie"}
    assert with_noise(shorter, 0.0, rng) is shorter
    with pytest.raises(PrefloopError, match="between 0 and 1"):
        with_noise(shorter, 1.5, rng)


def test_load_oracle_resolves_names_modules_and_files(tmp_path, monkeypatch):
    assert load_oracle("keywords") is keywords
    assert load_oracle("labelling.oracles:shorter") is shorter
    file = tmp_path / "my_rules.py"
    file.write_text("def prefer_b(prompt, a, b):\n    return 'b'\n")
    assert load_oracle(f"{file}:prefer_b")(PROMPT, "x", "y") == "b"
    monkeypatch.chdir(tmp_path)
    assert load_oracle("./my_rules.py:prefer_b")(PROMPT, "x", "y") == "b"
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_oracle("my_rules:prefer_b")(PROMPT, "x", "y") == "b"
    sys.modules.pop("my_rules", None)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("longest", "unknown oracle; use one of length-band, keywords, shorter, number"),
        ("no_such_module_xyz:f", "cannot import module 'no_such_module_xyz'"),
        ("labelling.oracles:nope", "has no function 'nope'"),
        ("missing/rules.py:f", "no such file missing/rules.py"),
    ],
)
def test_load_oracle_errors_say_what_is_wrong(spec, message):
    with pytest.raises(PrefloopError, match=message):
        load_oracle(spec)


def test_a_file_that_fails_to_import_is_reported_with_its_path(tmp_path):
    file = tmp_path / "broken.py"
    file.write_text("raise ValueError('bad rule file')\n")
    with pytest.raises(PrefloopError, match=r"importing .*broken.py failed: ValueError: bad rule file"):
        load_oracle(f"{file}:f")


def test_an_answer_outside_a_b_tie_is_rejected_with_the_oracle_named():
    assert checked_verdict("tie", "x") == "tie"
    with pytest.raises(PrefloopError, match=r"--oracle mine returned 'left'"):
        checked_verdict("left", "mine")
