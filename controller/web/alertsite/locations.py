"""AlertSite's public monitoring locations: each location id, AlertSite's name for it and the
ISO 3166-1 alpha-2 country mailprobe checks from for it (data, read by `alertsite_mapping`)."""

# AlertSite monitoring location id → (AlertSite's name for it, ISO 3166-1 alpha-2 country). 10, 20
# and 26 are in AlertSite's own pages (the v3 monitor examples, JSON API "Get Locations"); the
# others are the public locations as AlertSite's Get Locations lists them, recorded by an AlertSite
# client (github.com/schristian4/alertsite_bench_app, src/lib/constants.ts). Any other numeric id
# (a private location, a newer one) is a 400 naming it; ISO codes are accepted as ids too.
LOCATIONS: dict[int, tuple[str, str]] = {
    10: ("Fort Lauderdale, FL", "US"),
    15: ("Montreal, Quebec", "CA"),
    18: ("Tampa, FL", "US"),
    19: ("Miami, FL", "US"),
    20: ("Atlanta, GA", "US"),
    22: ("Charlotte, NC", "US"),
    25: ("Vancouver, British Columbia", "CA"),
    26: ("Atlanta, GA - ATT Wireless", "US"),
    28: ("Calgary, Alberta", "CA"),
    30: ("Fremont, CA", "US"),
    31: ("San Francisco, CA", "US"),
    33: ("Portland, OR", "US"),
    35: ("Seattle, WA", "US"),
    40: ("Washington, D.C.", "US"),
    42: ("Los Angeles, CA - Level3", "US"),
    43: ("Los Angeles, CA - NextLink", "US"),
    45: ("Denver, CO", "US"),
    47: ("Salt Lake City, UT", "US"),
    49: ("San Diego, CA", "US"),
    50: ("Chicago, IL - Tata", "US"),
    52: ("Chicago, IL - LeaseWeb", "US"),
    53: ("Kansas City, KS", "US"),
    55: ("Cincinnati, OH", "US"),
    56: ("Cleveland, OH", "US"),
    60: ("Dallas, TX - LeaseWeb", "US"),
    62: ("Las Vegas, NV", "US"),
    63: ("Austin, TX", "US"),
    65: ("Phoenix, AZ", "US"),
    67: ("Dallas, TX", "US"),
    69: ("New York, NY - LeaseWeb", "US"),
    70: ("New York, NY - Peer1", "US"),
    71: ("Newark, NJ - NLayer", "US"),
    72: ("Boston, MA", "US"),
    73: ("Boston, MA - Expedient", "US"),
    74: ("Worcester, MA", "US"),
    75: ("St. Louis, MO", "US"),
    80: ("Toronto, Ontario", "CA"),
    82: ("Minneapolis, MN", "US"),
    85: ("Detroit, MI", "US"),
    90: ("Philadelphia, PA - AboveNet", "US"),
    91: ("Philadelphia, PA - XO", "US"),
    93: ("Pittsburgh, PA", "US"),
    94: ("Memphis, TN", "US"),
    95: ("Houston, TX", "US"),
    4010: ("Sao Paulo, Brazil", "BR"),
    4020: ("Buenos Aires, Argentina", "AR"),
    5010: ("London, UK - AboveNet", "GB"),
    5020: ("Frankfurt, Germany", "DE"),
    5030: ("Madrid, Spain", "ES"),
    5040: ("Dublin, Ireland", "IE"),
    5050: ("Amsterdam, The Netherlands", "NL"),
    5060: ("Manchester, UK", "GB"),
    5070: ("Birmingham, UK", "GB"),
    5080: ("Paris, France", "FR"),
    5090: ("Copenhagen, Denmark", "DK"),
    5110: ("Stockholm, Sweden", "SE"),
    5120: ("Munich, Germany", "DE"),
    5130: ("London, UK - Docklands", "GB"),
    5140: ("Brussels, Belgium", "BE"),
    5150: ("Milan, Italy", "IT"),
    5160: ("Siauliai, Lithuania", "LT"),
    5170: ("Zurich, Switzerland", "CH"),
    6010: ("Singapore", "SG"),
    6020: ("Hong Kong", "HK"),
    6030: ("Shanghai, China", "CN"),
    6040: ("Mumbai, India", "IN"),
    6050: ("Tokyo, Japan", "JP"),
    6060: ("Tel Aviv, Israel", "IL"),
    6070: ("Beijing, China", "CN"),
    6080: ("Seoul, South Korea", "KR"),
    6110: ("New Delhi, India", "IN"),
    6120: ("Kuala Lumpur, Malaysia", "MY"),
    7010: ("Sydney, Australia", "AU"),
    7020: ("Perth, Australia", "AU"),
    7030: ("Brisbane, Australia", "AU"),
    7040: ("Sydney, Australia - Equinix", "AU"),
    7050: ("Auckland, New Zealand", "NZ"),
    8010: ("Cape Town, South Africa", "ZA"),
    8020: ("Bahrain", "BH"),
}


def _single_ids() -> dict[str, int]:
    """Country → its AlertSite location id, for the countries with exactly one."""
    ids: dict[str, list[int]] = {}
    for location_id, (_, country) in LOCATIONS.items():
        ids.setdefault(country, []).append(location_id)
    return {country: found[0] for country, found in ids.items() if len(found) == 1}


# GET answers these ids for their countries (an AlertSite script reads back what it sent); a
# country with several AlertSite locations (US, DE...) or none is answered by its ISO code.
COUNTRY_LOCATION = _single_ids()
