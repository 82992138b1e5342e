"""Why a monitor operation is refused, in the monitor's terms: the write path, fair use, the
trigger and validation raise these; each surface says them its own way (the API and AlertSite
map each class to one HTTP status in `controller.web.api.errors`, the console on its page).

Every refusal carries a stable machine-readable `code`, a `message` for a person and the
`fields` of the request at fault.
"""

from collections.abc import Mapping, Sequence


class Refused(Exception):
    """A monitor operation that did not happen, and why."""

    default_code = "refused"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        fields: Sequence[str] = (),
        retry_after_s: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.fields = list(fields)
        self.retry_after_s = retry_after_s  # when waiting helps: how long


class Invalid(Refused):
    """What was sent is not a valid value of the field it names."""

    default_code = "invalid_field"


class NotFound(Refused):
    """No such monitor the caller may see."""

    default_code = "not_found"


class NotAllowed(Refused):
    """The caller may not do this, or it would take the organization past a limit that
    waiting does not lift (the request has to change)."""

    default_code = "forbidden"


class Conflict(Refused):
    """The monitor's state does not allow it (a disabled monitor is not checked)."""

    default_code = "conflict"


class TooSoon(Refused):
    """An allowance used up for now; `retry_after_s` says when it has room again."""

    default_code = "too_many_requests"


class Unavailable(Refused):
    """This process cannot do it now (no check pipeline here, agents not yet known)."""

    default_code = "unavailable"


def invalid(field: str, message: str, code: str = "invalid_field") -> Invalid:
    """A 400-like refusal naming one field."""
    return Invalid(message, code=code, fields=[field])


class SecretMoved(Invalid):
    """A change moves stored secrets the write does not send again (`secret_binding`):
    `monitor_type` is the monitor's type after the change, `each` by secret path the fields
    that moved it (`secret_binding.moved_each`). Each surface names them its own way."""

    def __init__(self, monitor_type: str, each: Mapping[str, list[str]]) -> None:
        super().__init__(
            f"send the stored secrets again to change {', '.join(sorted(each))}",
            code="secret_required",
            fields=sorted(each),
        )
        self.monitor_type = monitor_type
        self.each = dict(each)


class Stale(Conflict):
    """The monitor changed after the surface read it to build the write."""
