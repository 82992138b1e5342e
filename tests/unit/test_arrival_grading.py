"""controller/arrivals/grading.py as a table."""

from typing import Final

import pytest

from controller.arrivals.grading import Finding, findings

W: Final = "warning"
C: Final = "critical"


@pytest.mark.parametrize(
    ("offered", "tls", "dkim", "dmarc", "want"),
    [
        (True, "TLSv1.3", "pass", "pass", []),
        (False, None, "pass", "pass", [Finding("sender_tls_not_enforced", W)]),
        (True, None, "pass", "pass", [Finding("sender_tls_not_used", C)]),
        (None, None, "pass", "pass", []),  # an agent that predates `starttlsOffered`
        (True, "TLSv1", "pass", "pass", [Finding("sender_tls_outdated", W)]),
        (True, "TLSv1.2", "none", "pass", [Finding("sender_dkim_missing", W)]),
        (
            True,
            "TLSv1.2",
            "fail",
            "fail",
            [Finding("sender_dkim_missing", W), Finding("sender_dmarc_fail", C)],
        ),
        (True, "TLSv1.2", None, None, []),  # not evaluated: nothing said
    ],
)
def test_what_an_arrival_says_of_its_sender(
    offered: bool | None, tls: str | None, dkim: str | None, dmarc: str | None, want: list[Finding]
) -> None:
    assert findings(offered, tls, dkim, dmarc) == want
