"""The controller's country keys (SEAL_PUBLIC_KEYS_DIR, re-read on change) and the rule for which
job configs travel sealed."""

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from controller.secrets.seal_keys import CountryKeys, carries_credentials
from shared.messages import ImapPopConfig, JobConfig, RoundTripConfig, SmtpAuth, SmtpConfig
from shared.sealing import SealingError, read_public_keys
from shared.secret import Secret
from testkit.sealing import KeyRing


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("config", "sealed"),
    [
        (SmtpConfig(), False),
        (SmtpConfig(secure=True), False),
        (SmtpConfig(auth=SmtpAuth("u", Secret("p"))), True),
        # A user name alone is sealed too: no mailbox name in clear.
        (SmtpConfig(auth=SmtpAuth("u", Secret(""))), True),
        # A password alone (stored in clear by hand, or before encryption at rest) too.
        (SmtpConfig(auth=SmtpAuth("", Secret("p"))), True),
        (ImapPopConfig(password=Secret("p")), True),
        (ImapPopConfig(user="u"), True),
        (ImapPopConfig(tls=True), False),
        (RoundTripConfig(), True),
    ],
)
def test_which_configs_travel_sealed(config: JobConfig, sealed: bool) -> None:
    assert carries_credentials(config) is sealed


async def test_keys_are_read_at_start_and_again_when_a_file_changes(tmp_path: Path) -> None:
    ring = KeyRing(tmp_path, ["DE", "US"])
    clock = Clock()
    keys = CountryKeys(str(tmp_path), reload_every_s=5, clock=clock)
    de = keys.get("DE")
    assert de is not None and de.id == ring.key_id("DE")
    assert keys.get("FR") is None
    ring.add("FR")
    ring.add("DE")
    ring.remove("US")
    clock.now = 4.9
    await keys.refresh()
    assert keys.get("FR") is None  # not looked at again yet
    clock.now = 5.0
    with capture_logs() as logs:
        await keys.refresh()
    fr, de, us = keys.get("FR"), keys.get("DE"), keys.get("US")
    assert fr is not None and fr.id == ring.key_id("FR")
    assert de is not None and de.id == ring.key_id("DE")
    assert us is None
    [line] = logs
    assert (line["added"], line["changed"], line["removed"]) == (["FR"], ["DE"], ["US"])


async def test_a_change_that_does_not_parse_keeps_the_previous_keys_and_is_logged_once(
    tmp_path: Path,
) -> None:
    ring = KeyRing(tmp_path, ["DE"])
    clock = Clock()
    keys = CountryKeys(str(tmp_path), reload_every_s=1, clock=clock)
    old_id = ring.key_id("DE")
    (tmp_path / "DE.pub").write_text("half a ke")
    with capture_logs() as logs:
        for step in range(1, 4):
            clock.now = step
            await keys.refresh()
            de = keys.get("DE")
            assert de is not None and de.id == old_id
    [line] = logs
    assert line["log_level"] == "error" and "DE.pub: public key is not base64" in line["error"]
    private = ring.add("DE")
    clock.now = 10
    await keys.refresh()
    de = keys.get("DE")
    assert de is not None and de.id == ring.key_id("DE")
    assert private not in repr(logs)


def test_without_a_directory_no_country_has_a_key_and_the_reason_says_so() -> None:
    with capture_logs() as logs:
        keys = CountryKeys(None)
    assert keys.get("DE") is None
    assert keys.missing("DE") == "SEAL_PUBLIC_KEYS_DIR is not set on the controller"
    assert logs[0]["log_level"] == "warning"


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("de.pub", None, "de.pub is not named CC.pub"),
        ("DEU.pub", None, "DEU.pub is not named CC.pub"),
        ("DE.pub", "not base64!", "DE.pub: public key is not base64"),
        ("DE.pub", "c2hvcnQ=", "DE.pub: public key must be 32 bytes, got 5"),
    ],
)
def test_a_bad_key_file_is_named(tmp_path: Path, name: str, text: str | None, message: str) -> None:
    KeyRing(tmp_path, ["US"])
    (tmp_path / name).write_text(text or (tmp_path / "US.pub").read_text())
    with pytest.raises(SealingError, match=message):
        read_public_keys(tmp_path)


def test_other_files_beside_the_keys_are_left_alone(tmp_path: Path) -> None:
    """Kubernetes mounts keep `..data` and timestamped folders beside the files."""
    ring = KeyRing(tmp_path, ["US"])
    (tmp_path / "..data").mkdir()
    (tmp_path / "README").write_text("keys")
    assert {cc: k.id for cc, k in read_public_keys(tmp_path).items()} == {"US": ring.key_id("US")}
