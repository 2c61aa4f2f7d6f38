"""Named prompt templates: turn a raw input (a video idea) into the prompt text a model is given.

The same template name is accepted by ``prompts import`` and ``labels import``, so an idea imported both
ways renders to one text and therefore one prompt.
"""

from __future__ import annotations

from core.errors import PrefloopError

PLACEHOLDER = "{idea}"

TEMPLATES: dict[str, str] = {
    # the seed tutorial's training prompt (see data/youtube-titles)
    "youtube-title": (
        "Given the YouTube video idea write an engaging title.\n\n"
        "**Video Idea**: {idea}\n\n"
        "**Additional Guidance**:\n"
        "- Title should be between 30 and 75 characters long\n"
        "- Only return the title idea, nothing else!"
    ),
}


def template_text(spec: str) -> str:
    """A registered template's text, or ``spec`` itself when it is a literal containing ``{idea}``."""
    if spec in TEMPLATES:
        return TEMPLATES[spec]
    if PLACEHOLDER in spec:
        return spec
    known = ", ".join(sorted(TEMPLATES))
    raise PrefloopError(f"unknown template {spec!r}: use one of {known}, or a text containing {PLACEHOLDER}")


def render(spec: str, raw: str) -> str:
    """The prompt text for ``raw`` (plain replacement, so braces elsewhere in the idea are safe)."""
    return template_text(spec).replace(PLACEHOLDER, raw)
