"""The document's operationIds, as a generated client names its functions: a verb, then the
resource in lowerCamelCase (`getSmtpMonitor`, `listSmtpMonitors`, `createSmtpMonitor`,
`listSmtpMonitorResults`, `setSmtpMonitorAlertSettings`).

The rule, from the method and the path (without `/api`; `/api/v3` is AlertSite's API, named
`AlertSite…`): a collection segment followed by an `{id}` names one of it (singular). GET of one
is `get`, GET of a plural collection `list`, GET of anything else `get`; POST to a collection
`create` (singular); PATCH `update`; PUT `set`; DELETE `delete`. Actions and the few paths the
rule does not name well are in ACTIONS.
"""

ACTIONS = {
    ("post", "/api/auth/login"): "login",
    ("post", "/api/auth/logout"): "logout",
    ("get", "/api/auth/me"): "getMe",
    ("post", "/api/v3/access-tokens"): "createAlertSiteAccessToken",
    ("post", "/api/v3/monitors/email-smtp"): "createAlertSiteSmtpMonitor",
    ("post", "/api/v3/monitors/email-imap"): "createAlertSiteImapMonitor",
    ("post", "/api/v3/monitors/email-pop"): "createAlertSitePopMonitor",
    ("patch", "/api/v3/monitors/email-smtp/{id}"): "updateAlertSiteSmtpMonitor",
    ("patch", "/api/v3/monitors/email-imap/{id}"): "updateAlertSiteImapMonitor",
    ("patch", "/api/v3/monitors/email-pop/{id}"): "updateAlertSitePopMonitor",
    ("post", "/api/users/{userPublicId}/revoke-tokens"): "revokeUserTokens",
    ("post", "/api/notification-channels/{channelId}/test"): "testNotificationChannel",
}
# Trailing words that name one thing although they end in "s".
_NOT_PLURAL = frozenset({"Settings", "Status"})
_VERBS = {"patch": "update", "put": "set", "delete": "delete"}


def _singular(word: str) -> str:
    if word.endswith("ies"):
        return word[:-3] + "y"
    return word[:-1] if word.endswith("s") and word not in _NOT_PLURAL else word


def operation_id(method: str, path: str) -> str:
    """The operationId of `method` (lower case) on `path` (the document's template)."""
    named = ACTIONS.get((method, path))
    if named is not None:
        return named
    parts = [p for p in path.split("/") if p and p != "api"]
    words = []
    if parts[:1] == ["v3"]:
        words.append("AlertSite")
        parts = parts[1:]
    for i, part in enumerate(parts):
        if part.startswith("{"):
            continue
        segment = [w.capitalize() for w in part.split("-")]
        if i + 1 < len(parts) and parts[i + 1].startswith("{"):
            segment[-1] = _singular(segment[-1])
        words += segment
    one = parts[-1].startswith("{")
    last = words[-1] if words else ""
    plural = not one and last.endswith("s") and last not in _NOT_PLURAL
    if method == "get":
        verb = "list" if plural else "get"
    elif method == "post":
        verb = "create"
        if plural:
            words[-1] = _singular(last)
    else:
        verb = _VERBS.get(method, method)
    if path.endswith("/trigger-check"):
        verb, words = "trigger", [*words[:-2], "Check"]
    return verb + "".join(words)
