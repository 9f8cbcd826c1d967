"""Plan generation: pure functions from (current state, requested change) to ordered steps."""
from typing import List

from pdserver.execution.steps import Step


def plan_hostconfig(current: dict, new: dict) -> List[Step]:
    """Replace the host configuration; a later sysconfig step applies it to interfaces."""
    if current == new:
        return []
    return [Step("write_hostconfig", {"config": new}, "write the new host configuration",
                 undo=Step("write_hostconfig", {"config": current}, "restore the previous host configuration"))]
