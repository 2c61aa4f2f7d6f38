"""Training text for the tiny model, read from the repo's own data (never from ../shared).

The failure mode of a tiny model on 570 titles is memorisation: it copies training titles whatever the
idea says. ``substitute_topic`` fights it by making fresh (idea, title) pairs every epoch: the phrase a
title shares with its idea is replaced, in both, by another idea's phrase or a real English phrase, so
the model learns to carry the idea's words into the title instead of recalling a stored title.
"""

from __future__ import annotations

import csv
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.paths import REPO_ROOT
from core.words import STOPWORDS
from storage.templates import render

DATA_DIR = REPO_ROOT / "data"
TITLES_CSV = DATA_DIR / "youtube-titles" / "idea-title_pairs.csv"
SEED_TEMPLATE = "youtube-title"
ENGLISH_JSON = DATA_DIR / "llamafactory-demo" / "dpo_en_demo.json"

WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-.'’+#]*[A-Za-z0-9+#]|[A-Za-z0-9]")


@dataclass(frozen=True)
class TitleExample:
    idea: str
    title: str


def load_title_examples(path: Path = TITLES_CSV) -> list[TitleExample]:
    """The 570 distinct (idea, title) pairs, in file order."""
    seen: dict[tuple[str, str], None] = {}
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            for title in (row["title_a"], row["title_b"]):
                seen.setdefault((row["idea"].strip(), title.strip()), None)
    return [TitleExample(idea, title) for idea, title in seen]


def load_english_text(path: Path = ENGLISH_JSON) -> list[str]:
    """Every message of LLaMA-Factory's English DPO demo (prompts, chosen and rejected answers)."""
    rows = json.loads(path.read_text(encoding="utf-8"))
    texts = []
    for r in rows:
        texts.extend(m["value"] for m in r["conversations"])
        texts.extend((r["chosen"]["value"], r["rejected"]["value"]))
    return texts


def words(text: str) -> list[re.Match[str]]:
    return list(WORD.finditer(text))


def shared_span(idea: str, title: str) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """Character spans of the longest run of words idea and title share (case-insensitive).

    Runs made only of stop words do not count. Returns ((idea_start, idea_end), (title_start, title_end)).
    """
    iw, tw = words(idea), words(title)
    il = [m.group().casefold() for m in iw]
    tl = [m.group().casefold() for m in tw]
    best: tuple[int, int, int] | None = None  # (length, idea index, title index)
    for i in range(len(il)):
        for j in range(len(tl)):
            k = 0
            while i + k < len(il) and j + k < len(tl) and il[i + k] == tl[j + k]:
                k += 1
            if k and any(w not in STOPWORDS for w in il[i : i + k]) and (best is None or k > best[0]):
                best = (k, i, j)
    if best is None:
        return None
    k, i, j = best
    return (iw[i].start(), iw[i + k - 1].end()), (tw[j].start(), tw[j + k - 1].end())


def title_case(phrase: str) -> str:
    """Capitalise each word's first letter, leaving acronyms and inner capitals alone."""
    return " ".join(w[:1].upper() + w[1:] for w in phrase.split(" "))


def substitute_topic(example: TitleExample, phrase: str) -> TitleExample | None:
    """The example with its shared idea/title phrase replaced by ``phrase``; None if they share none."""
    spans = shared_span(example.idea, example.title)
    if spans is None:
        return None
    (i0, i1), (t0, t1) = spans
    original = example.title[t0:t1]
    in_title = title_case(phrase) if original[:1].isupper() else phrase
    return TitleExample(
        example.idea[:i0] + phrase + example.idea[i1:], example.title[:t0] + in_title + example.title[t1:]
    )


def topic_phrases(examples: list[TitleExample]) -> list[str]:
    """The phrases ideas share with their titles (e.g. "fine-tuning LLMs"): realistic replacements."""
    phrases = {}
    for ex in examples:
        spans = shared_span(ex.idea, ex.title)
        if spans:
            phrases.setdefault(ex.idea[spans[0][0] : spans[0][1]], None)
    return list(phrases)


def english_phrases(texts: list[str], rng: random.Random, count: int) -> list[str]:
    """Short runs (1-3 words) of real English content words, as replacement topics."""
    out: set[str] = set()
    pool = [m.group() for t in texts for m in WORD.finditer(t)]
    while len(out) < count:
        n = rng.choice((1, 2, 2, 3))
        start = rng.randrange(len(pool) - n)
        run = pool[start : start + n]
        if all(w.isalpha() and w.casefold() not in STOPWORDS and len(w) > 2 for w in run):
            out.add(" ".join(run).lower())
    return sorted(out)


def augmented_examples(
    examples: list[TitleExample], replacements: list[str], rng: random.Random
) -> list[TitleExample]:
    """One fresh substituted copy of each example that shares a phrase with its idea."""
    out = []
    for ex in examples:
        new = substitute_topic(ex, rng.choice(replacements))
        if new is not None:
            out.append(new)
    return out


def chat_example(render: Callable[[str], str], ex: TitleExample) -> tuple[list[dict[str, str]], str]:
    """(prompt messages, assistant answer) in the shape prefloop generates from."""
    return [{"role": "user", "content": render(ex.idea)}], ex.title


def render_seed_prompt(idea: str) -> str:
    """The seed's training prompt, rendered by the same function ``prompts import --template`` uses."""
    return render(SEED_TEMPLATE, idea)


def seed_ideas(count: int | None = None) -> list[str]:
    """The seed's video ideas in file order (all 114, or the first ``count``)."""
    ideas = list(dict.fromkeys(ex.idea for ex in load_title_examples()))
    return ideas[:count]


def seed_idea_messages(count: int | None = None) -> list[list[dict[str, str]]]:
    """Chat prompts for the seed ideas, as ``prefloop prompts import --template youtube-title`` makes them."""
    return [[{"role": "user", "content": render_seed_prompt(idea)}] for idea in seed_ideas(count)]
