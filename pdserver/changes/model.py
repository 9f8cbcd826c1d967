"""A Change: one requested modification of the node, from queued to a final state."""
import dataclasses
import enum
from typing import Optional

from pdserver.errors import shorten


class ChangeState(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @property
    def final(self) -> bool:
        return self not in (ChangeState.QUEUED, ChangeState.RUNNING)


@dataclasses.dataclass(frozen=True)
class Change:
    id: int
    type: str
    target: Optional[str]
    user: Optional[str]
    state: ChangeState
    params: dict
    created: float
    started: Optional[float] = None
    finished: Optional[float] = None
    result: Optional[dict] = None
    needs_attention: bool = False

    def summary(self) -> dict:
        return {"id": self.id, "type": self.type, "target": self.target, "user": self.user,
                "state": self.state.value, "created": self.created, "started": self.started,
                "finished": self.finished, "result": self.result, "needs_attention": self.needs_attention}


class ChangeFailed(Exception):
    """A change handler's failure with a message for people and optional details."""

    def __init__(self, message: str, details: Optional[dict] = None, needs_attention: bool = False):
        message = shorten(message)
        super().__init__(message)
        self.message = message
        self.details = details or {}
        self.needs_attention = needs_attention
