"""A secret (a password in a monitor's config), typed, on both sides of the wire.

`Secret` holds the text and shows only the mask: its repr and str are `SECRET_MASK`, so a config,
a job or a Monitor is safe to log or print whole. On the wire and in the stored JSON it is its
plain string (`enc_hook`/`dec_hook`; the JSON is what it was when the field was a `str`); only
`reveal()` gives the text, where it is used (a prober's login, a seal).

Where a config holds its secrets is its type: every field typed `Secret` (`secret_paths`). The
controller's kinds (controller.monitors.kinds) name the same paths with the user each is bound
to, and a test holds the two together. Pure: msgspec only.
"""

import hmac
import types
from collections.abc import Callable, Iterator
from functools import cache
from typing import Final, TypeVar, Union, get_args, get_origin

import msgspec

SECRET_MASK: Final = "********"


class Secret:
    """A secret's text, shown only as the mask. Equal to another of the same type and text
    (compared in constant time); false when empty (no secret)."""

    __slots__ = ("_text",)

    def __init__(self, text: str = "") -> None:
        self._text = text

    def reveal(self) -> str:
        """The text itself: only where it is used, never for display."""
        return self._text

    def __bool__(self) -> bool:
        return bool(self._text)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret) or type(other) is not type(self):
            return NotImplemented
        return hmac.compare_digest(self._text.encode(), other._text.encode())

    def __hash__(self) -> int:
        return hash((type(self), self._text))

    def __repr__(self) -> str:
        return repr(SECRET_MASK)

    def __str__(self) -> str:
        return SECRET_MASK


NO_SECRET: Final = Secret()


def enc_hook(obj: object) -> object:
    """msgspec: a Secret is encoded as its text (the wire and the stored JSON)."""
    if isinstance(obj, Secret):
        return obj.reveal()
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")


def masked_hook(obj: object) -> object:
    """msgspec: a Secret is encoded as the mask ("" when none), as responses show it."""
    if isinstance(obj, Secret):
        return SECRET_MASK if obj else ""
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")


def dec_hook(type_: type, obj: object) -> object:
    """msgspec: a string where a Secret is declared becomes one."""
    if type_ is Secret and isinstance(obj, str):
        return Secret(obj)
    raise NotImplementedError(f"cannot decode {type_!r}")


def wrap(value: object) -> Secret:
    """A Secret field's value as constructed in code: a str is wrapped (see `__post_init__`
    of the config Structs), a Secret kept."""
    return value if isinstance(value, Secret) else Secret(str(value))


AttrPath = tuple[str, ...]


def _structs_in(annotation: object) -> Iterator[type[msgspec.Struct]]:
    if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
        yield annotation
    elif get_origin(annotation) in (Union, types.UnionType):
        for arg in get_args(annotation):
            yield from _structs_in(arg)


@cache
def secret_paths(struct_type: type[msgspec.Struct]) -> tuple[tuple[AttrPath, str], ...]:
    """Every field typed `Secret` in `struct_type` and the Structs it holds: (attribute path,
    the dotted path as the JSON spells it, e.g. `(("auth", "password"), "auth.pass")`)."""
    out: list[tuple[AttrPath, str]] = []
    for info in msgspec.structs.fields(struct_type):
        if info.type is Secret:
            out.append(((info.name,), info.encode_name))
            continue
        for inner in _structs_in(info.type):
            for attrs, wire in secret_paths(inner):
                out.append(((info.name, *attrs), f"{info.encode_name}.{wire}"))
    return tuple(out)


def secrets_in(struct: msgspec.Struct) -> Iterator[tuple[str, Secret]]:
    """(dotted JSON path, secret) of each secret `struct` holds (a path under a null is left
    out)."""
    for attrs, wire in secret_paths(type(struct)):
        value: object = struct
        for attr in attrs:
            value = getattr(value, attr, None)
        if isinstance(value, Secret):
            yield wire, value


StructT = TypeVar("StructT", bound=msgspec.Struct)


def with_secrets(struct: StructT, change: Callable[[Secret], Secret]) -> StructT:
    """A copy of `struct` with each secret it holds replaced by `change(secret)`."""
    for attrs, _ in secret_paths(type(struct)):
        struct = _replaced(struct, attrs, change)
    return struct


def _replaced(struct: StructT, attrs: AttrPath, change: Callable[[Secret], Secret]) -> StructT:
    head, *rest = attrs
    value = getattr(struct, head)
    if rest:
        if not isinstance(value, msgspec.Struct):
            return struct  # a null on the way: no secret there
        new: object = _replaced(value, tuple(rest), change)
    else:
        new = change(value)
    return msgspec.structs.replace(struct, **{head: new})
