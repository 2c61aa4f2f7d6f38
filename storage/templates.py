"""Named prompt templates: turn a raw input (a video idea) into the prompt a model is given.

A template is the user text and, for a chat model, a short system message stored with the prompt: without
one, SmolLM2's chat template inserts its own ("You are a helpful AI assistant named SmolLM, trained by
Hugging Face", ~20 tokens of every sequence). The same template name is accepted by ``prompts import`` and
``labels import``, so an idea imported both ways renders to one prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.errors import PrefloopError

PLACEHOLDER = "{idea}"


@dataclass(frozen=True)
class Template:
    text: str  # the user turn, with {idea} where the raw input goes
    system: str | None = None
    subject: str = "Input"  # what the raw input is, as the Annotate page names it above the input


TEMPLATES: dict[str, Template] = {
    # the seed tutorial's training prompt (see data/youtube-titles)
    "youtube-title": Template(
        text=(
            "Given the YouTube video idea write an engaging title.\n\n"
            "**Video Idea**: {idea}\n\n"
            "**Additional Guidance**:\n"
            "- Title should be between 30 and 75 characters long\n"
            "- Only return the title idea, nothing else!"
        ),
        system="You write YouTube video titles. Answer with one title on one line.",
        subject="Video idea",
    ),
}


def template_of(spec: str) -> Template:
    """A registered template, or ``spec`` itself as a user text when it is a literal containing ``{idea}``."""
    if spec in TEMPLATES:
        return TEMPLATES[spec]
    if PLACEHOLDER in spec:
        return Template(text=spec)
    known = ", ".join(sorted(TEMPLATES))
    raise PrefloopError(f"unknown template {spec!r}: use one of {known}, or a text containing {PLACEHOLDER}")


def subject_of(spec: str | None) -> str:
    """The name of a template's raw input ("Video idea"); "Input" for a literal or unknown template."""
    return TEMPLATES[spec].subject if spec in TEMPLATES else "Input"


def render(spec: str, raw: str) -> str:
    """The user text for ``raw`` (plain replacement, so braces elsewhere in the idea are safe)."""
    return template_of(spec).text.replace(PLACEHOLDER, raw)


def template_system(spec: str) -> str | None:
    """The system message a template's prompts are stored with (None: the model's own default)."""
    return template_of(spec).system


def asks_for_title(prompt_text: str, template: str | None, title_templates: Sequence[str]) -> bool:
    """The prompt was written from a title template: named so, or its text is the template's text around
    one idea (prompts imported as plain text keep no template name)."""
    if template is not None and template in title_templates:
        return True
    for spec in title_templates:
        head, _, tail = template_of(spec).text.partition(PLACEHOLDER)
        if (
            prompt_text.startswith(head)
            and prompt_text.endswith(tail)
            and len(prompt_text) > len(head + tail)
        ):
            return True
    return False
