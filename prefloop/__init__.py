"""prefloop: a human-preference annotation and DPO loop."""

__version__ = "0.1.0"
