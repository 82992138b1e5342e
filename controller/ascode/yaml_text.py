"""The YAML `export` writes: keys in the order given, and every text of more than one line (a
PEM certificate) as a literal block scalar (`|`), one line of the file per line of the text, as
a person writes it, rather than a quoted scalar with escapes or blank lines between lines."""

import yaml


class _Dumper(yaml.SafeDumper):
    pass


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # A text PyYAML cannot write as a block (trailing spaces, control characters) it quotes.
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def dump(data: object) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True)
