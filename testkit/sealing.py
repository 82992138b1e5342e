"""Country sealing keys for tests, made the way `deploy.mint_country` makes them: a directory of
`CC.pub` files for the controller, the private keys kept here for the agents."""

from pathlib import Path

import msgspec

from agent.check_runner import open_sealed
from shared import secret
from shared.messages import CheckJob, SealedConfig, encode_sealed
from shared.sealing import OpeningKeys, SealingKey, generate


class KeyRing:
    """The key pairs of some countries; `directory` is what SEAL_PUBLIC_KEYS_DIR points to."""

    def __init__(self, directory: Path, countries: list[str] | tuple[str, ...] = ()) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.private: dict[str, str] = {}
        for cc in countries:
            self.add(cc)

    def add(self, cc: str) -> str:
        """A new key pair for `cc` (replacing its public key file); its private key."""
        private, public = generate()
        (self.directory / f"{cc}.pub").write_text(public + "\n")
        self.private[cc] = private
        return private

    def remove(self, cc: str) -> None:
        (self.directory / f"{cc}.pub").unlink()

    def public(self, cc: str) -> SealingKey:
        return SealingKey.parse((self.directory / f"{cc}.pub").read_text())

    def key_id(self, cc: str) -> str:
        return self.public(cc).id

    def sealed(self, job: CheckJob, cc: str | None = None) -> CheckJob:
        """`job` as the controller sends it: its config (bound to its monitor, host and port)
        sealed to the key of `cc` (default: the job's country), the type's default config in
        its place."""
        key = self.public(cc or job.country)
        plain = encode_sealed(
            SealedConfig(
                monitor_id=job.monitor_id, hostname=job.hostname, port=job.port, config=job.config
            )
        )
        fields = msgspec.to_builtins(job, enc_hook=secret.enc_hook)
        del fields["config"]
        bare = msgspec.convert(fields, type(job))
        return msgspec.structs.replace(bare, sealed_config=key.seal(plain), seal_key_id=key.id)

    def opening(self, *countries: str) -> OpeningKeys:
        """What an agent of these countries holds (one country's key, usually)."""
        return OpeningKeys(self.private[cc] for cc in countries)

    def opened(self, job: CheckJob) -> CheckJob:
        """`job` with its sealed config opened with its country's key, as its agents do."""
        assert job.sealed_config is not None, "the job is not sealed"
        return open_sealed(job, self.opening(job.country))
