"""Host names and addresses as the console shows them: escaped; a name with a break opportunity
(`<wbr>`) after each dot and hyphen, so a narrow column wraps it at its labels, never one
character per line; an address (`127.0.0.1`, `2001:db8::1`) never wrapped at all. With a port,
the port stays on the line of the address or of the name's last label (`127.0.0.1:54466`,
`example.<wbr>com:993`): a number is never cut."""

import ipaddress
import re

from markupsafe import Markup, escape

_AFTER = re.compile(r"([.\-])")


def _is_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        return False
    return True


def host(value: str | None, port: int | None = None) -> Markup:
    name = str(value or "")
    tail = f'<span class="port">:{int(port)}</span>' if port else ""
    if _is_address(name):
        return Markup(f'<span class="nowrap">{escape(name)}{tail}</span>')
    if not tail:
        return Markup(_AFTER.sub(r"\1<wbr>", str(escape(name))))
    head, dot, last = name.rpartition(".")
    shown = _AFTER.sub(r"\1<wbr>", str(escape(head + dot)))
    return Markup(f'{shown}<span class="nowrap">{escape(last)}{tail}</span>')
