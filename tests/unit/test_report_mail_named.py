"""The domain a mailed message refused unparsed names in its subject (`mail.head_named`), read
from the head's bytes alone, as `mail.named_domain` reads it from the parsed message; and a
refusal carrying it back from the parsing worker's process."""

import pickle

import pytest

from controller.reports import mail
from controller.reports.rejected import Rejected


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        (b"Subject: Report Domain: Example.COM. Submitter: google.com\r\n\r\nbody", "example.com"),
        (b"From: a@b\nsubject: report domain:\n ex.test Submitter: x\n\nbody", "ex.test"),
        (b"Subject: A note\r\n\r\nSubject: Report Domain: body.test\r\n", ""),
        (b"X-Subject: Report Domain: other.test\r\n\r\n", ""),
        (
            b"Subject: Report Domain: first.test\r\nSubject: Report Domain: second.test\r\n\r\n",
            "first.test",
        ),
        (b"no head at all", ""),
        (b"", ""),
    ],
)
def test_the_domain_a_heads_subject_names(raw: bytes, named: str) -> None:
    assert mail.head_named(raw) == named


def test_a_message_refused_unparsed_names_its_subjects_domain() -> None:
    raw = b"Subject: Report Domain: deep.test\r\n\r\n" + b"multipart/ " * (mail.MAX_MULTIPARTS + 1)
    with pytest.raises(Rejected) as refused:
        mail.opened(raw)
    back = pickle.loads(pickle.dumps(refused.value))
    assert (back.reason, back.named) == ("too_deep", "deep.test")
