"""Plan of a host configuration change: pure, from (current config, new config) to ordered steps."""
import dataclasses
from typing import List

from pdserver.chutes.naming import ChuteNames
from pdserver.chutes.networks import NetworkFacts
from pdserver.execution import network_plans
from pdserver.execution.steps import Step


def plan_hostconfig(names: ChuteNames, current: dict, new: dict) -> List[Step]:
    """Apply the LAN of the new host configuration (its ports bridged, addressed, served by DHCP) and record
    the configuration; a rollback puts the old LAN back. Only the interfaces the configuration names are
    touched; the WAN is read, never configured."""
    if current == new:
        return []
    old_lan = NetworkFacts.from_hostconfig(current).host_lan
    new_lan = NetworkFacts.from_hostconfig(new).host_lan
    steps: List[Step] = []
    if old_lan != new_lan:
        if old_lan is not None:
            for setup in reversed(network_plans.host_lan_setup(names, old_lan)):
                steps.append(dataclasses.replace(setup.undo, undo=dataclasses.replace(setup, undo=None)))
        if new_lan is not None:
            steps += network_plans.host_lan_setup(names, new_lan)
    return steps + [Step("write_hostconfig", {"config": new}, "write the new host configuration",
                         undo=Step("write_hostconfig", {"config": current}, "restore the previous host configuration"))]
