"""CLI subcommands, one module per area of the loop; each exposes ``register(app)``."""
