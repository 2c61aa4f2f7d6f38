"""Words and numbers of the title task that several layers share, each defined once here."""

from __future__ import annotations

# the seed prompt's "Title should be between 30 and 75 characters long": the oracles' target, the
# health report's "in band" share and the tiny model builder's check all mean this band
LENGTH_BAND: tuple[int, int] = (30, 75)

# function words that carry no topic: a title repeating only these has not picked up the idea's words
STOPWORDS = frozenset(
    ("a", "an", "and", "are", "as", "at", "be", "by", "can", "do", "for", "from", "how", "i", "in", "is")
    + ("it", "its", "me", "my", "of", "on", "or", "our", "so", "that", "the", "this", "to", "vs", "we")
    + ("what", "when", "why", "with", "you", "your", "about", "into", "using", "use")
)
