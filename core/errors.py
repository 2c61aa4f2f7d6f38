"""The one exception type users see: its message is a single line that says what to do next."""


class PrefloopError(Exception):
    """A user-facing error (bad input, missing model, ...). The CLI prints it on one line and exits 1."""
