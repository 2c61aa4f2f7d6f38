"""How several annotators' decisions on one pair become (or do not become) a training pair. Pure."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from storage.models import Choice


def aggregate(choices: Iterable[Choice]) -> str:
    """'a' or 'b' when that side has the most votes, strictly ahead of every other choice.

    Otherwise the reason it is no DPO pair: 'unjudged' (no decision), 'skip' (only skips: nobody could
    judge it), 'tie' or 'both_bad' (the most-voted choice), 'no_majority' (the top two choices are level).
    Skips are ignored when there are other votes: a skip says "I cannot judge", not "they are equal".
    """
    choices = [Choice(c) for c in choices]
    if not choices:
        return "unjudged"
    votes = Counter(c for c in choices if c != Choice.skip).most_common()
    if not votes:
        return "skip"
    if len(votes) > 1 and votes[0][1] == votes[1][1]:
        return "no_majority"
    return votes[0][0].value
