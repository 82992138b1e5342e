"""Where a notice points a person: pages of the console under PUBLIC_URL (the deployment's
public base URL). Without it a notice names the monitor's id instead of a link."""

from dataclasses import dataclass
from uuid import UUID

from shared.settings import ControllerSettings

CONSOLE = "/console"


@dataclass(frozen=True, slots=True)
class Links:
    base: str | None = None  # PUBLIC_URL (a trailing slash is dropped)

    def __post_init__(self) -> None:
        if self.base is not None:
            object.__setattr__(self, "base", self.base.rstrip("/") or None)

    @classmethod
    def of(cls, settings: ControllerSettings) -> "Links":
        return cls(settings.public_url)

    def console(self) -> str | None:
        """The console's home page."""
        return None if self.base is None else f"{self.base}{CONSOLE}/"

    def monitor(self, public_id: UUID) -> str | None:
        """The monitor's console page (its posture included)."""
        return None if self.base is None else f"{self.base}{CONSOLE}/monitors/{public_id}"

    def incident(self, public_id: UUID) -> str | None:
        """A flow incident's console page (every monitor and country it touches)."""
        return None if self.base is None else f"{self.base}{CONSOLE}/incidents/{public_id}"

    def findings(self) -> str | None:
        """The organization's open findings."""
        return None if self.base is None else f"{self.base}{CONSOLE}/findings"


NO_LINKS = Links()  # no PUBLIC_URL: notices name the monitor's id
