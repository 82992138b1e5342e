"""Small SQL helpers shared by the query modules."""


def like_pattern(search: str | None) -> str | None:
    """`%search%` for ILIKE with the wildcard characters of `search` escaped."""
    if search is None:
        return None
    escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
