"""Docker engine adapter: images, containers, networks, volumes, logs, readiness. Imports nothing of pdserver
outside this package.

The engine itself (and the docker SDK under it, several MB) is imported on first use: code that only needs the
data types (the chute model's PortBinding, say) does not load it.
"""
from pdserver.containers.errors import (BuildFailed, Conflict, EngineError, EngineUnavailable, ImageUnavailable,
                                        InUse, NotFound, NotReady)
from pdserver.containers.interfaces import IContainerEngine
from pdserver.containers.spec import ContainerSpec, ContainerState, PortBinding

_LAZY = {"DockerEngine": "pdserver.containers.engine", "LogFollower": "pdserver.containers.logs",
         "wait_ready": "pdserver.containers.health"}

__all__ = ["DockerEngine", "IContainerEngine", "ContainerSpec", "ContainerState", "PortBinding", "LogFollower",
           "wait_ready", "EngineError", "EngineUnavailable", "ImageUnavailable", "BuildFailed", "Conflict",
           "NotFound", "InUse", "NotReady"]


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
