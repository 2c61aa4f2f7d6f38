"""Storage: SQLModel tables, the engine, migrations, import/export and pair assignment."""
