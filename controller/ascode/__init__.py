"""Monitors as code: `python -m controller apply -f monitors.yaml` and `export`.

`spec` reads a monitors file into the API's own request bodies (checked by the API's own rules,
errors with file and line); `plan` is the pure diff against what the API holds; `run` talks to
the API over HTTP with a token, so roles, tenancy, fair use and the secret binding apply as to
any other client. `device_cli` (`python -m controller oauth2-device`) is the same kind of client:
it stores an OAuth2 refresh token on a monitor's login through the API.
"""
