"""Country codes the suites on the session-wide NATS server (one per test process) hand out,
one per test: each suite draws from a pool of its own, and no two pools share a code, so no test
sees another's jobs, results, consumers or live agents under its country's subjects."""

from collections import deque
from collections.abc import Iterable, Iterator


def _pool(codes: str) -> tuple[str, ...]:
    return tuple(codes.split())


# tests/agent (about 90 in one test process); DE is kept for the `python -m agent --country DE`
# test, BO and PY for tests/e2e/virtual.py's agents.
AGENT = _pool(
    "FR IT ES NL BE AT CH PL SE NO DK FI PT IE CZ HU RO GR BG HR SI SK LT LV EE LU MT CY IS GB "
    "CA MX BR AR CL CO PE JP KR CN IN AU NZ ZA EG NG KE MA TN TR IL AE SA UA RS MK AL UZ GH SN "
    "CI CM RW ET DZ LY SD ZM MZ AO BW NA MU MG VE CR AM AZ BA BH BY FJ GE HK IQ IR LI MD SY "
    "TV TW WS"
)
# tests/ops
OPS = _pool("SG MY PH PK QA KW OM JO LB VN TH ID BD NP KZ")
# tests/pipeline (about 140 takes in one test process: its tests give their codes back).
PIPELINE = _pool(
    "UY EC GT HN NI PA CU DO HT JM TT BS BB TM KG TJ MN LK MM ZW MW LS SZ SC KM DJ ER SO SS UG "
    "BI TZ AW AF AI AD AG BJ BF BZ BM BN BT CF CD CG CV DM FO GN GM GW GQ GD GY KH KI KN LA LR "
    "LC MV MH ML MR AQ AX BL BQ BV CK CW CX EH FK FM GF GG GI GL GP GS GU HM IM IO JE KY MC ME "
    "MF MO MP MQ MS NC NE NF NR NU PF PG PM PN PR PS PW RE SB SH SJ SL SM SR ST SV SX TC TD TF "
    "TG TK TL UM VA VC VG VI VU WF YE YT AS CC GA KP RU TO"
)


def handout(pool: tuple[str, ...]) -> Iterator[str]:
    """The pool's codes, each once; running out is an error naming the pool's size."""
    yield from pool
    raise RuntimeError(f"all {len(pool)} country codes of this suite's pool are taken")


class Pool:
    """A suite's codes in one test process, the longest unused first: a test gives its codes back
    once it has emptied what it left under them, so a code is taken again only after every other
    code of the pool has been."""

    def __init__(self, codes: tuple[str, ...]) -> None:
        self.size = len(codes)
        self._free = deque(codes)

    def take(self) -> str:
        if not self._free:
            raise RuntimeError(f"all {self.size} country codes of this suite's pool are held")
        return self._free.popleft()

    def give_back(self, codes: Iterable[str]) -> None:
        self._free.extend(codes)
