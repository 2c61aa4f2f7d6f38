"""Words and numbers of the title task that several layers share, each defined once here."""

from __future__ import annotations

import functools
import re

# the seed prompt's "Title should be between 30 and 75 characters long": the oracles' target, the
# health report's "in band" share and the tiny model builder's check all mean this band
LENGTH_BAND: tuple[int, int] = (30, 75)

# function words that carry no topic: a title repeating only these has not picked up the idea's words
STOPWORDS = frozenset(
    ("a", "an", "and", "are", "as", "at", "be", "by", "can", "do", "for", "from", "how", "i", "in", "is")
    + ("it", "its", "me", "my", "of", "on", "or", "our", "so", "that", "the", "this", "to", "vs", "we")
    + ("what", "when", "why", "with", "you", "your", "about", "into", "using", "use")
)

_IDEA_LINE = re.compile(r"\*\*Video Idea\*\*:\s*(.+)")
_WORD = re.compile(r"[a-z0-9]+")


def idea_of(prompt: str) -> str:
    """The idea behind a youtube-title prompt (its "**Video Idea**: X" line), else the whole prompt."""
    found = _IDEA_LINE.search(prompt)
    return found.group(1).strip() if found else prompt


_SUFFIXES = ("ing", "ed", "es", "s", "e")


def _stem(word: str) -> str:
    """Crude stemming so "LLMs"/"LLM" and "tuning"/"tune"/"tuned" match: one suffix off, 6 letters kept."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    return word[:6]


def key_words(text: str) -> set[str]:
    """Stems of the content words of ``text`` (stop words dropped; hyphenated words split)."""
    return {_stem(w) for w in _WORD.findall(text.casefold().replace("-", " ")) if w not in STOPWORDS}


@functools.lru_cache(maxsize=4096)
def _prompt_words(prompt_text: str) -> frozenset[str]:
    """A prompt's key words, once per prompt: every sample of a prompt asks for the same set."""
    return frozenset(key_words(idea_of(prompt_text)))


def is_on_topic(text: str, prompt_text: str) -> bool | None:
    """Shares a key word with the prompt's idea (the "**Video Idea**: X" line, else the whole prompt);
    None when the idea has no key word. The health report and the tiny model's build check both use it."""
    wanted = _prompt_words(prompt_text)
    return bool(wanted & key_words(text)) if wanted else None


REPEAT_BIGRAM_SHARE = 0.1  # a title whose word bigrams are more than this share duplicates is looping
REPEAT_NGRAM = 3  # long-form repeats are counted on word n-grams of this size
REPEAT_NGRAM_SHARE = 0.5  # lists and code repeat phrases too; a loop repeats most of its 3-grams
_TOKEN = re.compile(r"\w+")


def is_degenerate(text: str, title_like: bool = True) -> bool:
    """Title: a word doubled in a row ("tips tips") or word bigrams repeating ("5 Steps to 5 Steps").
    Long-form: more than ``REPEAT_NGRAM_SHARE`` of the word 3-grams already occurred earlier in the text."""
    words = _TOKEN.findall(text.casefold())
    if not title_like:
        grams = list(zip(*(words[k:] for k in range(REPEAT_NGRAM)), strict=False))
        return bool(grams) and 1 - len(set(grams)) / len(grams) > REPEAT_NGRAM_SHARE
    if any(a == b for a, b in zip(words, words[1:], strict=False)):
        return True
    bigrams = list(zip(words, words[1:], strict=False))
    if len(bigrams) < 2:
        return False
    return 1 - len(set(bigrams)) / len(bigrams) > REPEAT_BIGRAM_SHARE
