"""The one mail client: IMAP, POP3 and SMTP sessions with their TLS upgrades, spoken by the
agent's probers and the controller's report mailbox reader.

- `imap`: aioimaplib's protocol, driven over a transport opened here (so the address dialled
  and the name the certificate is checked for can differ), with STARTTLS by the event loop's
  `start_tls`, AUTHENTICATE for the OAuth2 mechanisms and a byte budget for a fetched body.
- `pop3`: RFC 1939 over asyncio streams (no maintained asyncio POP3 library), with STLS, CAPA,
  AUTH for the OAuth2 mechanisms and every answer bounded (a line, a multi-line answer).
- `smtp`: aiosmtplib, connected on a socket opened by the caller, with the OAuth2 AUTH
  exchange it lacks and a password login that stops at the first refusal of the credentials.
- `sasl`: what goes inside the OAuth2 SASL messages.

The client measures nothing and words nothing for a person: it raises the typed failures of
`errors`, and each caller times its phases and says what went wrong in its own terms (a
result's errorKind and message, a mailbox's error). It never logs: a password or a token it
carries reaches no log line at any level.
"""
