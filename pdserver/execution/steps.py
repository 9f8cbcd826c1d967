"""Steps are data: an action name, its arguments, a description for people, and an undo step.

They are JSON-serialisable so the journal can hold them and a restarted node
can finish a change it was running when it died: back to the old state while
no commit step has finished, forward to the new state after one has. Neighbouring steps marked ``together``
run at the same time (independent engine calls: the network and the volume of a chute).
"""
import dataclasses
from typing import Any, Mapping, Optional


@dataclasses.dataclass(frozen=True)
class Step:
    action: str
    args: Mapping[str, Any]
    description: str
    undo: Optional["Step"] = None
    commit: bool = False
    together: bool = False

    def to_dict(self) -> dict:
        return {"action": self.action, "args": dict(self.args), "description": self.description,
                "undo": self.undo.to_dict() if self.undo else None, "commit": self.commit,
                "together": self.together}

    @classmethod
    def from_dict(cls, data: Mapping) -> "Step":
        undo = data.get("undo")
        return cls(data["action"], dict(data["args"]), data["description"],
                   cls.from_dict(undo) if undo else None, bool(data.get("commit", False)),
                   bool(data.get("together", False)))
