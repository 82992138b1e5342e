"""An OAuth2 issuer and token endpoint, Dovecot and Postfix behind it, run on loopback."""
