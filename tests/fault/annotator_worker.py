"""One annotator as a separate process: ``python -m tests.fault.annotator_worker URL ANNOTATOR_ID N``.

Imports only storage and labelling (no torch), prints "ready", waits for a line on stdin so that every
worker starts deciding at once, then makes up to N decisions through the same calls the Annotate page
uses (``next_pair`` then ``record_judgment``) and prints them as one JSON list.
"""

from __future__ import annotations

import json
import random
import sys
import time

from core.config import AnnotateConfig
from labelling.assignment import next_pair, record_judgment
from storage.db import make_engine

SETTINGS = AnnotateConfig(overlap_train=2, overlap_eval=2, eval_share=0.2, lease_seconds=300)


def main(url: str, annotator_id: int, n: int) -> None:
    engine = make_engine(url)
    rng = random.Random(annotator_id)
    with engine.connect():  # connect before the start signal: the figures are decisions, not logins
        pass
    print("ready", flush=True)
    sys.stdin.readline()
    decisions = []
    for _ in range(n):
        started = time.perf_counter()
        pair = next_pair(engine, annotator_id, SETTINGS)
        if pair is None:
            break
        choice = rng.choice(["a", "b", "tie"])
        judgment = record_judgment(
            engine, annotator_id, pair.comparison_id, choice, left=pair.left, settings=SETTINGS
        )
        ms = (time.perf_counter() - started) * 1000
        decisions.append(
            {"judgment": judgment.id, "comparison": pair.comparison_id, "choice": choice, "ms": ms}
        )
    engine.dispose()
    print(json.dumps(decisions), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
