"""What the code holds itself to, checked as a real error: a rule of the code's own (a row an
INSERT ... RETURNING always returns, a value an earlier step always sets), never bad input,
which gets its own error naming the field. Unlike `assert`, the check stays under `python -O`.
"""


class BrokenInvariant(RuntimeError):
    """A rule the code holds itself to did not hold: a bug (the message says which rule)."""
