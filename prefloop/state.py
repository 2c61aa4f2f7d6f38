"""What every command gets through ``ctx.obj``: the config, and the database opened on demand.

Its own module so commands import it without importing the CLI that imports every command.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import typer
from sqlalchemy import Engine

from core.config import Config


@dataclass
class State:
    config: Config
    _engine: Engine | None = field(default=None, repr=False)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            from storage.db import make_engine, migrate

            self._engine = make_engine(self.config.db)
            migrate(self._engine)
        return self._engine


def state(ctx: typer.Context) -> State:
    return ctx.find_root().obj
