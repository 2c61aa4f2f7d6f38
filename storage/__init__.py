"""Storage: tables, the engine, migrations, queries, import/export formats (TRL, LLaMA-Factory, Arena)."""
