"""Host names as the console shows them: escaped, with a break opportunity (`<wbr>`) after each
dot and hyphen, so a narrow column wraps a name at its labels, never one character per line."""

import re

from markupsafe import Markup, escape

_AFTER = re.compile(r"([.\-])")


def host(value: str | None) -> Markup:
    return Markup(_AFTER.sub(r"\1<wbr>", str(escape(value or ""))))
