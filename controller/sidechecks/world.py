"""The side checks' parts of the world gauges (`frame.WorldGauges`), which the world metrics
(controller.oracles.metrics) read in turn and name none of: one line per side check that has
gauges of its own, built from the operator's settings."""

from collections.abc import Iterable

from controller.sidechecks.blocklists import world as blocklists_world
from controller.sidechecks.blocklists.rules import BlockList
from controller.sidechecks.frame import WorldGauges
from controller.sidechecks.reports import world as reports_world


def world_gauges(lists: Iterable[BlockList] = ()) -> tuple[WorldGauges, ...]:
    """`lists`: the operator's BLOCKLISTS."""
    return (blocklists_world.gauges(lists), reports_world.GAUGES)
