"""``python -m testkit.crash POINT [prefloop arguments]``: the ``prefloop`` CLI, SIGKILLed at a named point.

The crash/re-run tests kill a real process at each boundary of ``train-round`` where a kill could leave
something half-done. The kill comes from wrapping the function at that boundary here, so production
code carries no test hook.
"""

from __future__ import annotations

import functools
import importlib
import os
import signal
import sys

# point -> (module, function, kill "before" it runs or "after" it returns)
POINTS = {
    "after-export": ("loop.round", "export_labels", "after"),  # labels exported, no training run yet
    "mid-train": ("training.registry", "save_metrics", "after"),  # the first logging step is stored
    "after-health": ("loop.round", "gate", "after"),  # the chosen checkpoint in the staging folder
    "after-rename": ("training.registry", "move_into_place", "after"),  # adapter in place, not registered
    "after-register": ("loop.round", "publish", "after"),  # version registered, nothing generated
    "after-generate-train": ("loop.round", "generate_stage", "after"),  # round N's train pairs queued
    "mid-eval": ("loop.round", "queue_eval_pairs", "before"),  # eval samples stored, no eval pairs yet
    # the first baseline's (base's) pairs stored, the previous round's not yet: one transaction each
    "after-eval-pairs-base": ("loop.round", "queue_eval_pairs", "after"),
}


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def arm(point: str) -> None:
    """Wrap the function of ``point`` so that the process SIGKILLs itself there."""
    module_name, name, when = POINTS[point]
    module = importlib.import_module(module_name)
    original = getattr(module, name)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        if when == "before":
            _kill()
        result = original(*args, **kwargs)
        _kill()
        return result

    setattr(module, name, wrapper)


def main() -> None:
    point, *args = sys.argv[1:] or [""]
    if point not in POINTS:
        sys.exit(f"usage: python -m testkit.crash {{{','.join(POINTS)}}} [prefloop arguments]")
    arm(point)
    from prefloop.cli import main as prefloop_main

    sys.argv = ["prefloop", *args]
    prefloop_main()


if __name__ == "__main__":
    main()
