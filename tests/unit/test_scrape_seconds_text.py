"""The scrape writes durations with `_seconds_text`, which must print exactly what
`str(_seconds(ms))` prints (the output stays byte-identical), whatever the float."""

import random
import struct

import pytest

from controller.web.console.scrape_series import _seconds, _seconds_text

EDGES = [
    0.0,
    -0.0,
    0.1,
    0.0999999,
    0.1000001,
    0.0005,
    0.0015,
    0.0025,
    1.0005,
    1.2345,
    1.793,
    20.0,
    120.0,
    999.9995,
    29999.999,
    1e-9,
    5e-324,
    -1.5,
    -0.05,
    999_999_999_999.0,
    1e12,
    1e15,
    1e300,
    float("inf"),
    float("-inf"),
    float("nan"),
]


@pytest.mark.parametrize("ms", EDGES)
def test_edges_print_as_the_rounded_float(ms: float) -> None:
    assert _seconds_text(ms) == str(_seconds(ms))


def test_random_floats_print_as_the_rounded_float() -> None:
    rng = random.Random(24)
    values = [rng.uniform(0, 60_000) for _ in range(50_000)]
    values += [round(rng.uniform(0, 60_000), 3) for _ in range(50_000)]  # whole microseconds
    values += [rng.randrange(0, 10**7) / 2000 for _ in range(50_000)]  # ties at 7 decimals
    values += [10 ** rng.uniform(-6, 14) for _ in range(50_000)]
    bits = (rng.getrandbits(64) for _ in range(50_000))
    values += [v for v in (struct.unpack("<d", b.to_bytes(8, "little"))[0] for b in bits)]
    wrong = [v for v in values if _seconds_text(v) != str(_seconds(v))]
    assert wrong == []
