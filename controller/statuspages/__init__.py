"""Customers' public status pages: what a page shows (its monitors, their days, incidents,
maintenance, notices), its notices and their subscribers, the pages' stores, and the cache the
public page is served from. The console's forms and the public routes (web/console/status*.py)
and the API's status notices (web/api/status_notices.py) are their surfaces."""
