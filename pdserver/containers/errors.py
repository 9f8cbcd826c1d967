"""The container engine adapter's branch of the node's error hierarchy. Messages are written for people."""
from pdserver import errors


class EngineError(errors.Error):
    """Something the Docker engine refused or failed to do."""

    status, code = 503, "engine_error"


class EngineUnavailable(EngineError):
    """The Docker daemon's socket does not answer."""

    def __init__(self, detail: str):
        super().__init__(f"the Docker engine does not answer ({detail}): run tools/start-engine")


class ImageUnavailable(EngineError):
    """An image is not on this node and could not be fetched."""


class BuildFailed(EngineError):
    """An image build stopped with an error; the message names the step and ends with the last output."""


class Conflict(errors.Conflict, EngineError):
    """An object with that name exists already (or differs from what was asked)."""


class NotFound(errors.NotFound, EngineError):
    """No container, network, volume or image of that name."""


class InUse(errors.Conflict, EngineError):
    """An object cannot be removed while something (a container, say) uses it."""


class NotReady(EngineError):
    """A container did not become ready; ``reason`` says what was wrong."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
