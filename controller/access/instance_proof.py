"""Proof that a controller is the one a command-line tool means, before the tool sends it a
token (pure).

`make run` gives its controller a random INSTANCE_KEY and leaves the same key in `.run/`
(readable by its owner only). A tool about to send a bearer token to a plain-http API asks
`/instance-proof?challenge=<random>` first and sends the token only when the answer is the
HMAC-SHA256, under the key, of that challenge and the port the tool connected to: a server that
does not hold the key (another program on the port, another checkout's run, a run since
stopped) cannot answer, and sees no token. The port is the controller's own (API_PORT), never
what the request says: a program on another port that passes the challenge on to the real
controller gets a proof for the controller's port, which the tool refuses.
"""

import hashlib
import hmac
import re

PATH = "/instance-proof"
# A fresh random challenge per check: 32 bytes as hex. The server takes 32 to 128 hex digits.
CHALLENGE = re.compile(r"[0-9a-f]{32,128}")
_CONTEXT = b"mailprobe instance proof\x00"


def proof(key: str, challenge: str, port: int) -> str:
    message = _CONTEXT + f"{port}\x00{challenge}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def holds(key: str, challenge: str, port: int, answer: str) -> bool:
    """Whether `answer` proves holding `key` for `challenge` at `port` (compared in constant
    time)."""
    return hmac.compare_digest(proof(key, challenge, port), answer)
