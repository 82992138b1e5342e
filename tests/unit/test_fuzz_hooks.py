"""The fuzz hook that empties a channel change's id lists: well-formed lists only, so a case
made invalid on purpose stays invalid (tests/fuzz/hooks.py)."""

from typing import Any

import pytest

from controller.web.api import channels
from tests.fuzz.hooks import MAX_CHOSEN, _no_unknown_choices

ID = "0f655c9b-6b08-40a7-bc6d-1eeea30c6544"


@pytest.mark.parametrize(
    ("body", "after"),
    [
        ({"customerIds": [1, 2]}, {"customerIds": []}),
        ({"customerIds": [4392.0, 14742.0]}, {"customerIds": []}),  # integers to JSON Schema
        ({"customerIds": [1.5]}, {"customerIds": [1.5]}),
        ({"customerIds": [0]}, {"customerIds": [0]}),
        ({"customerIds": [2**63]}, {"customerIds": [2**63]}),
        ({"customerIds": [True]}, {"customerIds": [True]}),
        ({"customerIds": ["1"]}, {"customerIds": ["1"]}),
        ({"customerIds": 1}, {"customerIds": 1}),
        ({"monitorIds": [ID, ID.upper()]}, {"monitorIds": []}),
        ({"monitorIds": [ID, 1]}, {"monitorIds": [ID, 1]}),
        ({"monitorIds": ["a"]}, {"monitorIds": ["a"]}),  # not `format: uuid`
        ({"monitorIds": [ID.replace("-", "")]}, {"monitorIds": [ID.replace("-", "")]}),
        ({"monitorIds": [ID] * MAX_CHOSEN}, {"monitorIds": []}),
        ({"monitorIds": [ID] * (MAX_CHOSEN + 1)}, {"monitorIds": [ID] * (MAX_CHOSEN + 1)}),
        ({"customerIds": [1] * (MAX_CHOSEN + 1)}, {"customerIds": [1] * (MAX_CHOSEN + 1)}),
        ({"name": "x"}, {"name": "x"}),
    ],
)
def test_only_well_formed_id_lists_are_emptied(body: dict[str, Any], after: dict[str, Any]) -> None:
    _no_unknown_choices(body)
    assert body == after


def test_the_hooks_bound_is_the_apis() -> None:
    assert MAX_CHOSEN == channels.MAX_CHOSEN
