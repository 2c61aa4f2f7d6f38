"""Where prefloop keeps things: the database, and beside it the folder of that database's artifacts.

Artifacts (adapters, training runs, exports, reports, server logs, the app's secret) belong to exactly one
database, so their folder is derived from the database's URL, never from where prefloop is installed:
two projects on one machine never share an adapters folder, and an installed prefloop never writes into
site-packages.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from sqlalchemy.engine import make_url

from core.errors import PrefloopError

REPO_ROOT = Path(__file__).resolve().parent.parent
# a source checkout keeps its default database in var/ beside the code; an installed one in ./var
_PROJECT = REPO_ROOT if (REPO_ROOT / "pyproject.toml").is_file() else Path.cwd()
VAR_DIR = Path(os.environ.get("PREFLOOP_VAR", _PROJECT / "var"))  # the default database's folder


def database_url(url: str | None = None) -> str:
    """An explicit URL, else ``PREFLOOP_DB``, else ``VAR_DIR/prefloop.db``."""
    return url or os.environ.get("PREFLOOP_DB") or f"sqlite:///{VAR_DIR / 'prefloop.db'}"


def data_home() -> Path:
    """Where the work folders of server databases live: ``PREFLOOP_HOME``, else the XDG data folder."""
    if os.environ.get("PREFLOOP_HOME"):
        return Path(os.environ["PREFLOOP_HOME"])
    xdg = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(xdg) / "prefloop"


def work_dir(url: str | None = None) -> Path:
    """The folder of one database's artifacts.

    An SQLite file ``DIR/NAME.db`` keeps them in ``DIR/NAME-work``; a server database (PostgreSQL) in
    ``data_home()/<backend>-<host>-<port>-<database>``.
    """
    parsed = make_url(database_url(url))
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise PrefloopError(
                f"{parsed}: an in-memory database has no folder for adapters and reports; use a file"
            )
        file = Path(parsed.database).resolve()
        return file.parent / f"{file.stem}-work"
    parts = (
        parsed.get_backend_name(),
        parsed.host or "local",
        parsed.port or "default",
        parsed.database or "",
    )
    return data_home() / re.sub(r"[^A-Za-z0-9._-]", "_", "-".join(str(p) for p in parts))
