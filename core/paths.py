"""Where prefloop keeps things: the project root and the var folder (adapters, exports, runs, reports)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("PREFLOOP_VAR", REPO_ROOT / "var"))
