"""SECRETS_KEY rotation: a new key prepended encrypts, the old one still decrypts what it wrote."""

import pytest
from cryptography.fernet import Fernet

from controller.secrets.box import SecretBox, SecretBoxError


def test_a_prepended_key_encrypts_and_the_old_one_still_opens_what_it_wrote() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    written_before = SecretBox(old).seal("hunter2")

    rotated = SecretBox(f"{new},{old}")
    assert rotated.open(written_before) == "hunter2"
    written_after = rotated.seal("correct horse")
    assert rotated.open(written_after) == "correct horse"
    # New secrets are the new key's: a box with only the old key cannot open them ...
    with pytest.raises(SecretBoxError):
        SecretBox(old).open(written_after)
    # ... and dropping the old key too early loses what it wrote, loudly, never silently.
    with pytest.raises(SecretBoxError):
        SecretBox(new).open(written_before)
