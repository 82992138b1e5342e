"""The sealing settings: SEAL_PUBLIC_KEYS_DIR (controller), AGENT_SEAL_KEYS_FILE and
AGENT_SEAL_KEYS (agent). A bad one is one line naming it, never the key itself."""

from pathlib import Path

import pytest

from agent.settings import AgentSettings, opening_keys
from controller.settings import ControllerSettings
from shared.sealing import generate
from shared.settings import SettingsError, load
from testkit.sealing import KeyRing

GOOD = {"DATABASE_URL": "postgresql://u@localhost/db"}


def agent(**env: str) -> AgentSettings:
    return load(AgentSettings, {"AGENT_COUNTRY": "DE", **env})


def test_the_controller_reads_the_key_directory(tmp_path: Path) -> None:
    KeyRing(tmp_path, ["DE", "US"])
    settings = load(ControllerSettings, {**GOOD, "SEAL_PUBLIC_KEYS_DIR": str(tmp_path)})
    assert settings.secrets.seal_public_keys_dir == str(tmp_path)
    assert load(ControllerSettings, GOOD).secrets.seal_public_keys_dir is None


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (None, "SEAL_PUBLIC_KEYS_DIR cannot be used: [Errno 2] No such file or directory"),
        ({"DE.pub": "bm90IGEga2V5"}, "SEAL_PUBLIC_KEYS_DIR cannot be used: DE.pub: public key"),
        ({"Germany.pub": ""}, "SEAL_PUBLIC_KEYS_DIR cannot be used: Germany.pub is not named"),
    ],
)
def test_a_bad_key_directory_is_one_line_naming_it(
    tmp_path: Path, files: dict[str, str] | None, message: str
) -> None:
    folder = tmp_path / "keys"
    if files is not None:
        folder.mkdir()
        for name, text in files.items():
            (folder / name).write_text(text)
    with pytest.raises(SettingsError) as caught:
        load(ControllerSettings, {**GOOD, "SEAL_PUBLIC_KEYS_DIR": str(folder)})
    assert str(caught.value).startswith(f"setting {message}")
    assert "\n" not in str(caught.value)


def test_the_agent_holds_the_keys_of_its_file_and_of_its_variable(tmp_path: Path) -> None:
    """A rotation: two keys in the file (blank lines are fine), one more in the variable."""
    old, new, extra = generate()[0], generate()[0], generate()[0]
    keys_file = tmp_path / "DE.keys"
    keys_file.write_text(f"{old}\n\n{new}\n")
    settings = agent(AGENT_SEAL_KEYS_FILE=str(keys_file), AGENT_SEAL_KEYS=f" {extra} ,")
    assert len(opening_keys(settings.sealing).ids) == 3
    assert opening_keys(agent().sealing).ids == frozenset()  # no keys: unsealed jobs only


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AGENT_SEAL_KEYS_FILE": "/nonexistent/DE.keys"}, "AGENT_SEAL_KEYS_FILE cannot be read"),
        ({"AGENT_SEAL_KEYS_FILE": "{empty}"}, "AGENT_SEAL_KEYS_FILE holds no key"),
        (
            {"AGENT_SEAL_KEYS_FILE": "{good_then_bad}"},
            "AGENT_SEAL_KEYS_FILE: key 2 of 2: private key must be 32 bytes, got 33",
        ),
        ({"AGENT_SEAL_KEYS": "{bad}"}, "AGENT_SEAL_KEYS: key 1 of 1: private key is not base64"),
        ({"AGENT_SEAL_KEYS": " , "}, "AGENT_SEAL_KEYS holds no key"),
    ],
)
def test_a_bad_agent_key_setting_is_one_line_naming_it_without_the_key(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    good, bad = generate()[0], "A" * 43 + "!" + generate()[0][:8]
    empty, mixed = tmp_path / "empty", tmp_path / "mixed"
    empty.write_text("\n")
    long_key = "A" * 44  # 33 bytes once decoded
    mixed.write_text(f"{good}\n{long_key}\n")
    names = {"{empty}": str(empty), "{good_then_bad}": str(mixed), "{bad}": bad}
    with pytest.raises(SettingsError) as caught:
        agent(**{k: names.get(v, v) for k, v in env.items()})
    text = str(caught.value)
    assert text.startswith(f"setting {message}") and "\n" not in text
    assert good not in text and bad not in text and long_key not in text
