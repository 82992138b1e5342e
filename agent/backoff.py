"""Capped exponential backoff with jitter, for the worker's retries against NATS."""

import random


class Backoff:
    """Waits of `first`, doubling per failure up to `cap`; `reset()` after a success.

    Each wait is drawn from the upper half of its step, so the agents of a country that lost
    NATS together do not all come back in the same instant.
    """

    def __init__(self, first: float, cap: float) -> None:
        if not 0 < first <= cap:
            raise ValueError("backoff needs 0 < first <= cap")
        self._first = first
        self._cap = cap
        self._step = first

    def next(self) -> float:
        wait = self._step * random.uniform(0.5, 1.0)
        self._step = min(self._cap, self._step * 2)
        return wait

    def reset(self) -> None:
        self._step = self._first
