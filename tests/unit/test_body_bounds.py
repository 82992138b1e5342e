"""Which requests announce a body (whose answer closes the connection unless it was read)."""

from typing import Any

import pytest

from controller.web.body_bounds import declares_body

CASES = [
    ([], False),
    ([(b"content-length", b"0")], False),
    ([(b"content-length", b"1")], True),
    ([(b"content-length", b"2147483648")], True),
    ([(b"transfer-encoding", b"chunked")], True),
    ([(b"host", b"x"), (b"transfer-encoding", b"gzip, chunked")], True),
    ([(b"host", b"x"), (b"content-type", b"application/json")], False),
]


@pytest.mark.parametrize(("headers", "expected"), CASES)
def test_a_request_declares_a_body_by_a_length_above_0_or_chunks(
    headers: list[tuple[bytes, bytes]], expected: bool
) -> None:
    scope: Any = {"type": "http", "headers": headers}
    assert declares_body(scope) is expected
