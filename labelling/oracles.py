"""Simulated labellers: rules that pick the better of two candidates, for dry runs and the loop-learns test.

An oracle is any ``fn(prompt, a, b) -> "a" | "b" | "tie"``. The built-ins reward different, checkable
things, so a round trained on one oracle's labels can be judged by the same oracle:

- ``length-band``: the seed's guidance, a title of 30-75 characters (nearer the band's middle wins inside it);
- ``keywords``: the title that repeats more of the video idea's key words;
- ``shorter``: the shorter title;
- ``number``: a title with a number in it (the listicle style "5 Steps to ...", a common click pattern);
- ``clean-title``: what a person checks at a glance in a real model's titles: one line, 30-75 characters,
  no quotes, no word repeated, no "Title:"-style label or markup, not the idea copied out, on the idea's
  topic (fewer faults wins; equally clean is a tie).

``load_oracle(spec)`` resolves a built-in NAME, ``package.module:func``, or ``path/to/file.py:func``;
``with_noise`` models a careless human by flipping a share of decisive answers.
"""

from __future__ import annotations

import importlib
import importlib.util
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from core.errors import PrefloopError
from core.words import LENGTH_BAND, idea_of, is_on_topic, key_words

Verdict = Literal["a", "b", "tie"]
Oracle = Callable[[str, str, str], str]
VERDICTS = ("a", "b", "tie")

LENGTH_TIE_CHARS = 4  # inside the band, closer-to-middle must win by more than this to count
SHORTER_TIE_CHARS = 2  # "shorter" by one or two characters is a tie: nobody sees that difference

_WORD = re.compile(r"[a-z0-9]+")
_DIGIT = re.compile(r"\d")


def prefer(score_a: float, score_b: float, margin: float = 0.0) -> Verdict:
    """Higher score wins; scores within ``margin`` of each other tie."""
    if abs(score_a - score_b) <= margin:
        return "tie"
    return "a" if score_a > score_b else "b"


def band_distance(title: str, band: tuple[int, int] = LENGTH_BAND) -> float:
    """0 inside the band, else how many characters outside it."""
    n = len(title.strip())
    return max(band[0] - n, n - band[1], 0)


def length_band(prompt: str, a: str, b: str) -> Verdict:
    """Prefer a title inside 30-75 characters; both outside: the nearer; both inside: nearer the middle.

    Inside-vs-inside is decided too (the band's middle is the safe target), else almost every pair of the
    tiny model's titles would tie and there would be nothing to learn.
    """
    dist_a, dist_b = band_distance(a), band_distance(b)
    if dist_a != dist_b:
        return prefer(-dist_a, -dist_b)
    middle = sum(LENGTH_BAND) / 2
    return prefer(-abs(len(a.strip()) - middle), -abs(len(b.strip()) - middle), LENGTH_TIE_CHARS)


def keywords(prompt: str, a: str, b: str) -> Verdict:
    """Prefer the title containing more of the idea's key words (a title that stays on topic)."""
    wanted = key_words(idea_of(prompt))
    return prefer(len(wanted & key_words(a)), len(wanted & key_words(b)))


def shorter(prompt: str, a: str, b: str) -> Verdict:
    """Prefer the shorter title (by more than two characters)."""
    return prefer(-len(a.strip()), -len(b.strip()), SHORTER_TIE_CHARS)


def number(prompt: str, a: str, b: str) -> Verdict:
    """Prefer the title with a number in it ("5 Steps to ...", "in 30 Minutes"); tie if both or neither."""
    return prefer(bool(_DIGIT.search(a)), bool(_DIGIT.search(b)))


# double quotes anywhere; a single quote only at a word's edge (an apostrophe, "Beginner's", is fine)
_QUOTE = re.compile("[\"\u201c\u201d`]|(?<!\\w)['\u2018\u2019]|['\u2018\u2019](?!\\w)")


# a label the model put before its answer ("Title:", "**Video Idea**:"), or Markdown/hashtag markup at
# the start: the answer is about the title, not one
_LABEL = re.compile(r"^\W*(?:(?:youtube )?(?:video )?(?:title|idea)|answer)\W*:|^\s*(?:\*\*|#)", re.I)


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def title_faults(title: str, idea: str = "") -> list[str]:
    """The ``clean-title`` faults of one title for the video ``idea`` (each at most once): "lines",
    "length", "quotes", "repeat", "label", and, given the idea, "copy" (the idea itself, no title written)
    and "topic" (none of the idea's key words).

    >>> title_faults('The Lean Lying Lying "Guide"')
    ['length', 'quotes', 'repeat']
    >>> title_faults("**Video Idea**: Fourier transform", idea="Fourier transform")
    ['label', 'copy']
    """
    text = title.strip()
    words = [w for w in _words(text) if len(w) > 1]
    unlabelled = _LABEL.sub("", text)
    faults = [
        ("lines", "\n" in text),
        ("length", band_distance(text) > 0),
        ("quotes", bool(_QUOTE.search(text))),
        ("repeat", len(words) != len(set(words))),
        ("label", unlabelled != text),
        ("copy", bool(idea) and _words(unlabelled) == _words(idea)),
        ("topic", bool(idea) and is_on_topic(text, idea) is False),
    ]
    return [name for name, found in faults if found]


def clean_title(prompt: str, a: str, b: str) -> Verdict:
    """Prefer the title with fewer faults (several lines, outside 30-75 characters, quotes, a word twice,
    a label or markup before it, the idea copied out, off the idea's topic)."""
    idea = idea_of(prompt)
    return prefer(-len(title_faults(a, idea)), -len(title_faults(b, idea)))


BUILTIN: dict[str, Oracle] = {
    "length-band": length_band,
    "keywords": keywords,
    "shorter": shorter,
    "number": number,
    "clean-title": clean_title,
}


def with_noise(oracle: Oracle, p: float, rng: random.Random) -> Oracle:
    """The same oracle, but a share ``p`` of its decisive answers flipped (ties are kept)."""
    if not 0.0 <= p <= 1.0:
        raise PrefloopError(f"--noise {p}: a share of answers to flip, between 0 and 1")
    if p == 0:
        return oracle

    def noisy(prompt: str, a: str, b: str) -> str:
        verdict = oracle(prompt, a, b)
        if verdict in ("a", "b") and rng.random() < p:
            return "b" if verdict == "a" else "a"
        return verdict

    noisy.__name__ = f"{getattr(oracle, '__name__', 'oracle')}+noise{p:g}"
    return noisy


def _load_file(path: Path, spec: str):
    if not path.is_file():
        raise PrefloopError(f"--oracle {spec}: no such file {path}; give path/to/file.py:FUNC")
    module_spec = importlib.util.spec_from_file_location(f"prefloop_oracle_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        raise PrefloopError(f"--oracle {spec}: importing {path} failed: {type(exc).__name__}: {exc}") from exc
    return module


def load_oracle(spec: str) -> Oracle:
    """A built-in name, ``module:func`` (importable), or ``path/to/file.py:func``."""
    if spec in BUILTIN:
        return BUILTIN[spec]
    where, sep, func_name = spec.rpartition(":")
    if not sep or not where or not func_name:
        raise PrefloopError(
            f"--oracle {spec}: unknown oracle; use one of {', '.join(BUILTIN)}, MODULE:FUNC or FILE.py:FUNC"
        )
    if where.endswith(".py") or "/" in where:
        module = _load_file(Path(where), spec)
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise PrefloopError(f"--oracle {spec}: cannot import module {where!r}: {exc}") from exc
    func = getattr(module, func_name, None)
    if not callable(func):
        raise PrefloopError(f"--oracle {spec}: {where} has no function {func_name!r}")
    return func


def checked_verdict(verdict: object, spec: str) -> Verdict:
    """Reject an oracle answer other than "a", "b", "tie" with a message naming the oracle."""
    if verdict not in VERDICTS:
        raise PrefloopError(f"--oracle {spec} returned {verdict!r}; an oracle must return 'a', 'b' or 'tie'")
    return verdict  # type: ignore[return-value]
