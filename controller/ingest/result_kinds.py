"""Error kinds of results the controller records itself that are no verdict on the server."""

# `auth_backoff`: the monitor's credentials were rejected and its logins wait; `login_capped`:
# the account had LOGIN_CAP_PER_ACCOUNT logins in the window (controller.logins.backoff, the
# scheduler): this country's check did not run, on purpose. So with a round trip's message
# that its mailbox or recipient domain may not get now (controller.roundtrips.rules).
HELD_KINDS = frozenset(
    {"auth_backoff", "login_capped", "mailbox_unconfirmed", "delivery_backoff", "domain_capped"}
)
