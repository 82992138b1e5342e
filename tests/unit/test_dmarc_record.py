"""One DMARC record read once for every side check (shared/sidechecks/dmarc_record.py), as
tables: what receivers discard of a record (`faults`) and the policy they apply by it
(`applied`, RFC 9989 4.10.1)."""

import pytest

from shared.sidechecks.dmarc_record import applied, faults, is_record, tags

RUA = "rua=mailto:d@example.test"


@pytest.mark.parametrize(
    ("record", "found"),
    [
        # records as large senders publish them: no fault
        (f"v=DMARC1; p=reject; {RUA},mailto:x@example.net; ruf=mailto:f@example.test", []),
        ("v=DMARC1;p=none;", []),
        ("v=DMARC1; p=Quarantine; sp=none; fo=0:1:d:s; rua = mailto:d@example.test!10m", []),
        (f"v=DMARC1; p=none; {RUA}; psd=n; t=y; np=reject; adkim=s; aspf=r", []),
        # RFC 9989 dropped pct, rf and ri: obsolete (readiness says so), no fault
        ("v=DMARC1; p=reject; pct=150; rf=afrf; ri=x", []),
        # faults, each named
        ("v=DMARC1; p=reject; strict", ["'strict' is not a tag=value pair"]),
        (f"v=DMARC1; {RUA}", ["no p= tag (the policy)"]),
        ("v=DMARC1; p=rejct", ["p=rejct is not none, quarantine or reject"]),
        ("v=DMARC1; p=none; np=block", ["np=block is not none, quarantine or reject"]),
        ("v=DMARC1; p=none; t=maybe", ["t=maybe is not y or n"]),
        ("v=DMARC1; p=none; psd=x", ["psd=x is not y, n or u"]),
        ("v=DMARC1; p=none; aspf=x", ["aspf=x is not r or s"]),
        ("v=DMARC1; p=none; rua=nowhere", ["rua: 'nowhere' is not a URI"]),
        ("v=DMARC1; p=none; fo=2", ["fo=2 is not 0, 1, d or s, colon-separated"]),
    ],
)
def test_what_receivers_discard_of_a_record(record: str, found: list[str]) -> None:
    assert is_record(record)
    assert faults(record) == found


@pytest.mark.parametrize(
    ("record", "policy"),
    [
        ("v=DMARC1; p=reject", {"p": "reject"}),
        (
            "v=DMARC1; p=reject; sp=none; np=quarantine",
            {"p": "reject", "sp": "none", "np": "quarantine"},
        ),
        # no valid policy: p=none when reports are asked, else no DMARC processing
        (f"v=DMARC1; p=rejct; {RUA}", {"p": "none"}),
        (f"v=DMARC1; {RUA}", {"p": "none"}),
        ("v=DMARC1; p=rejct", None),
        ("v=DMARC1; p=reject; np=block", None),
        # a tag that does not parse is discarded, not the record
        ("v=DMARC1; p=reject; strict", {"p": "reject"}),
    ],
)
def test_the_policy_receivers_apply(record: str, policy: dict[str, str] | None) -> None:
    assert applied(tags(record)) == policy
