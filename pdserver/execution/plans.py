"""Plan of a host configuration change: pure, from (current config, new config) to ordered steps."""
from typing import Dict, Iterable, List, Tuple

from pdserver.chutes.naming import ChuteNames
from pdserver.chutes.networks import NetworkFacts, check_host_aps
from pdserver.execution import network_plans
from pdserver.execution.steps import Step


def plan_hostconfig(names: ChuteNames, current: dict, new: dict,
                    held: Iterable[Tuple[str, Dict[str, dict]]] = ()) -> List[Step]:
    """Apply the LAN of the new host configuration (its ports bridged, addressed, served by DHCP) and the
    node's own access points on it, and record the configuration; a rollback puts the old LAN and access
    points back. Only the interfaces the configuration names are touched; the WAN is read, never configured.
    ``held``: (chute, its network assignments) of the installed chutes; a radio one holds is refused (409)."""
    if current == new:
        return []
    check_host_aps(new, held)
    old, fresh = NetworkFacts.from_hostconfig(current), NetworkFacts.from_hostconfig(new)
    old_lan, new_lan = old.host_lan, fresh.host_lan
    moved = old_lan != new_lan  # the access points are ports of the LAN bridge: they follow it
    steps: List[Step] = []
    for ap in old.host_aps:
        if moved or ap not in fresh.host_aps:
            steps += network_plans.host_ap_teardown(names, ap)
    if moved:
        if old_lan is not None:
            steps += network_plans.undone(network_plans.host_lan_setup(names, old_lan))
        if new_lan is not None:
            steps += network_plans.host_lan_setup(names, new_lan)
    for ap in fresh.host_aps:
        if moved or ap not in old.host_aps:
            steps += network_plans.host_ap_setup(names, ap)
    return steps + [Step("write_hostconfig", {"config": new}, "write the new host configuration",
                         undo=Step("write_hostconfig", {"config": current}, "restore the previous host configuration"))]
