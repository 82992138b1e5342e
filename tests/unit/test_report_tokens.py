"""The TLS-RPT address's token rule (controller.reports.tokens) as a table: a token given in the
path is anything a stranger typed, and a wrong one is `False`, whatever its characters."""

import pytest

from controller.reports import tokens

KEYS = [b"k" * 32, b"old-key" * 4]
RIGHT = tokens.token(KEYS[0], 7, "example.com", 2)


@pytest.mark.parametrize(
    ("given", "generations", "accepted"),
    [
        (RIGHT, (2,), True),
        (RIGHT, (3, 2), True),
        (RIGHT, (1,), False),
        (tokens.token(KEYS[1], 7, "example.com", 2), (2,), True),  # an older key still listed
        (tokens.token(KEYS[0], 8, "example.com", 2), (2,), False),  # another organization's
        ("", (2,), False),
        (RIGHT.upper(), (2,), False),
        (RIGHT + "a", (2,), False),
        ("é" * len(RIGHT), (2,), False),  # not ASCII: hmac.compare_digest refuses such str
        ("\udcff\udcfe", (2,), False),  # undecodable bytes as a path parameter may carry them
        ("\x00", (2,), False),
    ],
)
def test_a_token_matches_only_its_own_organization_domain_and_generations(
    given: str, generations: tuple[int, ...], accepted: bool
) -> None:
    assert tokens.matches(KEYS, 7, "example.com", given, generations) is accepted
