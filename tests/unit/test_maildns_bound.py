"""The size bound of mail DNS facts (`shared.sidechecks.mail_dns_bound.bounded`), as a table."""

import msgspec
import pytest

from shared.sidechecks.mail_dns import MailDns
from shared.sidechecks.mail_dns_bound import ENCODED_MAX, bounded

SMALL = MailDns(domain="example.test", spf=["v=spf1 -all"], dmarc=["v=DMARC1; p=reject"])


@pytest.mark.parametrize(
    ("given", "cut"),
    [
        (SMALL, []),
        (MailDns(domain="d.test", spf=["v=spf1 " + "a" * 3000]), ["spf"]),
        (MailDns(domain="d.test", mx=[f"mx{i}.d.test" for i in range(30)]), ["mx"]),
        (
            MailDns(
                domain="d.test",
                spf=["v=spf1 " + "a" * 2000] * 14,
                tlsa=["3 0 0 " + "a" * 2000] * 14,
            ),
            ["spf", "tlsa"],
        ),
        (
            MailDns(domain="d.test", mta_sts=["v=STSv1; id=1"], mta_sts_policy="x" * 65536),
            ["mtaStsPolicy"],
        ),
        (MailDns(domain="d.test", errors={f"k{i}": "e" * 900 for i in range(20)}), ["errors"]),
        (MailDns(domain="d.test", spf=["v=spf1 -all"], truncated=["spf"]), ["spf"]),
    ],
)
def test_mail_dns_is_bounded_never_emptied_and_what_was_cut_is_named(
    given: MailDns, cut: list[str]
) -> None:
    """Pins the bound: ≤ 16 KiB encoded, a cut list keeps a record, `truncated` names it."""
    out = bounded(given)
    assert len(msgspec.json.encode(out)) <= ENCODED_MAX
    assert out.truncated == cut
    for name in ("mx", "spf", "dmarc", "mta_sts", "tls_rpt", "tlsa"):
        assert bool(getattr(out, name)) == bool(getattr(given, name))
    if not cut:
        assert out is given
