"""Proof that a controller is the one a command-line tool means, before the tool sends it a
token (pure).

`make run` gives its controller a random INSTANCE_KEY and leaves the same key in `.run/`
(readable by its owner only). A tool about to send a bearer token to a plain-http API asks
`/instance-proof?challenge=<random>` first and sends the token only when the answer is the
HMAC-SHA256, under the key, of that challenge and the address and port the tool connected to: a
server that does not hold the key (another program on the port, another checkout's run, a run
since stopped) cannot answer, and sees no token. The port is the controller's own (API_PORT)
and the address the one its socket was reached at, never what the request says: a program on
another port, or on the same port at another address (`[::1]`, `127.0.0.2`: what `localhost`
may name first), that passes the challenge on to the real controller gets a proof for where the
controller is, which the tool refuses. The tool sends the token to the address it proved
(controller.ascode.client), never to a name resolved again.
"""

import hashlib
import hmac
import ipaddress
import re

PATH = "/instance-proof"
# A fresh random challenge per check: 32 bytes as hex. The server takes 32 to 128 hex digits.
CHALLENGE = re.compile(r"[0-9a-f]{32,128}")
_CONTEXT = b"mailprobe instance proof\x00"


def address(host: str) -> str:
    """`host` as the proof names it: an IP address in its short form (an IPv4-mapped IPv6 one
    as its IPv4 address); anything else as it is (which no socket's address equals)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def proof(key: str, challenge: str, host: str, port: int) -> str:
    message = _CONTEXT + f"{address(host)}\x00{port}\x00{challenge}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def holds(key: str, challenge: str, host: str, port: int, answer: str) -> bool:
    """Whether `answer` proves holding `key` for `challenge` at `host` (an IP address) and
    `port` (compared in constant time)."""
    return hmac.compare_digest(proof(key, challenge, host, port), answer)
