"""Docker engine adapter: images, containers, networks, volumes, logs, readiness. Imports nothing of pdserver
outside this package."""
from pdserver.containers.engine import DockerEngine
from pdserver.containers.errors import (BuildFailed, Conflict, EngineError, EngineUnavailable, ImageUnavailable,
                                        InUse, NotFound, NotReady)
from pdserver.containers.health import wait_ready
from pdserver.containers.interfaces import IContainerEngine
from pdserver.containers.logs import LogFollower
from pdserver.containers.spec import ContainerSpec, ContainerState, PortBinding

__all__ = ["DockerEngine", "IContainerEngine", "ContainerSpec", "ContainerState", "PortBinding", "LogFollower", "wait_ready",
           "EngineError", "EngineUnavailable", "ImageUnavailable", "BuildFailed", "Conflict", "NotFound", "InUse",
           "NotReady"]
