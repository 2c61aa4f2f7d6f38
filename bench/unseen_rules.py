"""Rules with no built-in, loaded the way a user's own is: ``--oracle bench/unseen_rules.py:FUNC``.

The label-efficiency bench runs them through that path, so it measures the loop on a rule the selection
and the defaults were not tuned on, and checks that ``prefloop simulate --oracle FILE.py:FUNC`` works.
"""

from __future__ import annotations


def no_colon(prompt: str, a: str, b: str) -> str:
    """Style: prefer the title without a colon ("Fine-Tuning: A Guide" loses to "Fine-Tuning Made Easy");
    both or neither: a tie."""
    has_a, has_b = ":" in a, ":" in b
    if has_a == has_b:
        return "tie"
    return "b" if has_a else "a"
