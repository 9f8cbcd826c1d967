"""Names and labels of the Docker objects of a chute. Labels let reconciliation find orphans.

Several nodes may share one engine, so every name carries a short key of the node: two nodes installing
a chute of the same name get separate networks, volumes, containers and images. Releases before that named
a chute's /data volume without the node; the chutes they installed keep that volume (see ``legacy_volume``).
"""
import hashlib
import re
from typing import Dict, Optional

LABEL_CHUTE = "org.paradrop.chute"
LABEL_VERSION = "org.paradrop.version"
LABEL_SERVICE = "org.paradrop.service"
LABEL_DEPLOYMENT = "org.paradrop.deployment"
LABEL_NODE = "org.paradrop.node"  # which node made it: reconciliation touches only its own node's objects


def node_key(node_id: str) -> str:
    """8 hex digits of the node id: valid in every kind of Docker name (image names must be lower case)."""
    return hashlib.sha256(node_id.encode()).hexdigest()[:8]


class ChuteNames:
    """The names one node gives the Docker objects of its chutes."""

    def __init__(self, node_id: str):
        self.node_id = node_id
        self._prefix = f"paradrop-{node_key(node_id)}"

    def network(self, chute: str) -> str:
        return f"{self._prefix}-{chute}"

    def volume(self, chute: str) -> str:
        return f"{self._prefix}-{chute}-data"

    def container(self, chute: str, service: str, deployment: int) -> str:
        """Deployment (the id of the change that made it) keeps an update's containers apart from the old ones."""
        return f"{self._prefix}-{chute}-{service}-{deployment}"

    def image(self, chute: str, service: str, version: str, deployment: int) -> str:
        return (f"paradrop-chute/{node_key(self.node_id)}-{chute}-{service}:"
                f"{re.sub(r'[^A-Za-z0-9_.-]', '_', version)}-{deployment}")

    def link(self, kind: str, chute: str, service: str, interface: str, deployment: Optional[int] = None) -> str:
        """A host interface of a chute network: ``kind`` is two letters (``pd`` bridge, ``pv`` a container's
        veth, ``pl`` a VLAN, ``pa`` an AP); 10 characters, under Linux's 15, unique per node and chute."""
        key = "/".join([self.node_id, chute, service, interface] + ([str(deployment)] if deployment is not None
                                                                     else []))
        return kind + hashlib.sha256(key.encode()).hexdigest()[:8]

    def mac(self, chute: str, service: str, interface: str) -> str:
        """The MAC address of a chute's interface: the same for every deployment, so the clients of its network
        keep their ARP entry across updates and restarts (a locally administered unicast address)."""
        digest = hashlib.sha256("/".join([self.node_id, chute, service, interface]).encode()).digest()
        return ":".join(f"{b:02x}" for b in (0x02,) + tuple(digest[:5]))

    def node_labels(self) -> Dict[str, str]:
        return {LABEL_NODE: self.node_id}


def legacy_volume(chute: str) -> str:
    """The /data volume of a chute installed by a release before node-scoped names: its record keeps
    naming it, so the chute keeps its data."""
    return f"paradrop-{chute}-data"


def labels(chute: str, version: str, deployment: Optional[int] = None, service: Optional[str] = None
           ) -> Dict[str, str]:
    out = {LABEL_CHUTE: chute, LABEL_VERSION: version}
    if deployment is not None:
        out[LABEL_DEPLOYMENT] = str(deployment)
    if service is not None:
        out[LABEL_SERVICE] = service
    return out
