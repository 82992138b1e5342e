"""The Gmail API's quota units per method, as Google publishes them (Gmail API reference,
"Usage limits": each user may spend a number of units per minute; a call costs its method's).
The agent charges each call its method's units from the job's `apiUnits`; the controller
reserves a job's units from these costs (controller.scheduling.api_calls_store)."""

from typing import Final

UNITS: Final[dict[str, int]] = {
    "messages.send": 100,
    "messages.list": 5,
    "messages.get": 5,
    "messages.trash": 5,
    "messages.delete": 10,
    "users.getProfile": 1,
    "labels.get": 1,
}
SEND: Final = UNITS["messages.send"]
# A mailbox check over Gmail: the profile (its token's reach), then the INBOX label.
MAILBOX_CHECK: Final = UNITS["users.getProfile"] + UNITS["labels.get"]
