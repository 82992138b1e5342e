"""A round trip's addresses, checked when it is written: pure rules, no I/O.

- `to` is the mailbox the receive leg reads. When the receive login is an address, `to` is in
  its domain (`probe@example.com` logs in, `probe+rt@example.com` or `monitor@example.com` is
  mailed); otherwise `to`'s domain is the receive server's name or a parent of it
  (`imap.example.com` reads `…@example.com`). A receive server given as an IP address with a
  login that is not an address relates to no domain: the login must then be the address.
- `from` is an address the send leg may use: the send login, or in its domain, when the login
  is an address; without one (an unauthenticated relay, or a plain user name) it is in `to`'s
  domain, so a probe names only its owner's own domain as sender.
"""

import idna


def domain(address: str) -> str:
    """The domain of `address`, lower case, IDN as punycode (`…@Bücher.Example` → `xn--…`)."""
    return host_name(address.rpartition("@")[2])


def host_name(name: str) -> str:
    text = name.strip().rstrip(".").lower()
    try:
        return idna.encode(text, uts46=True).decode("ascii")
    except idna.IDNAError:
        return text


def _is_address(login: str | None) -> bool:
    return bool(login) and "@" in (login or "")


def _is_ip(host: str) -> bool:
    return host.replace(".", "").isdigit() or ":" in host


def recipient_problem(to: str, login: str | None, host: str) -> str | None:
    """Why `to` is not the mailbox the receive leg (`login` at `host`) reads; None when it is."""
    rcpt = domain(to)
    if _is_address(login):
        if rcpt == domain(login or ""):
            return None
        return (
            f"must be in the receive login's domain ({domain(login or '')}): a round trip mails"
            " only the mailbox it reads"
        )
    server = host_name(host)
    if _is_ip(server):
        return (
            "cannot be related to a receive server given as an IP address: give the mailbox's"
            " address as receive.user, so `to` can be checked against it"
        )
    if "." in rcpt and (server == rcpt or server.endswith(f".{rcpt}")):
        return None
    return (
        f"must be in the receive server's domain ({server} or a parent of it): a round trip"
        " mails only the mailbox it reads"
    )


def sender_problem(sender: str, login: str | None, to: str) -> str | None:
    """Why the send leg may not use `sender` as its address (send `login`, recipient `to`)."""
    if _is_address(login):
        if sender.lower() == (login or "").lower() or domain(sender) == domain(login or ""):
            return None
        return f"must be the send login or in its domain ({domain(login or '')})"
    if domain(sender) == domain(to):
        return None
    return (
        f"must be in `to`'s domain ({domain(to)}) when the send leg has no login that is an address"
    )
