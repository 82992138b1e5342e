"""OAuth2 logins of monitors: grants, access tokens fetched and cached, fair token fetch slots."""
