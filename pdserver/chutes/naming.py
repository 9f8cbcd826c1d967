"""Names and labels of the Docker objects of a chute. Labels let reconciliation find orphans."""
import re
from typing import Dict, Optional

LABEL_CHUTE = "org.paradrop.chute"
LABEL_VERSION = "org.paradrop.version"
LABEL_SERVICE = "org.paradrop.service"
LABEL_DEPLOYMENT = "org.paradrop.deployment"
LABEL_NODE = "org.paradrop.node"  # which node made it: reconciliation touches only its own node's objects


def network_name(chute: str) -> str:
    return f"paradrop-{chute}"


def volume_name(chute: str) -> str:
    return f"paradrop-{chute}-data"


def container_name(chute: str, service: str, deployment: int) -> str:
    """Deployment (the id of the change that made it) keeps an update's containers apart from the old ones."""
    return f"paradrop-{chute}-{service}-{deployment}"


def image_tag(chute: str, service: str, version: str, deployment: int) -> str:
    return f"paradrop-chute/{chute}-{service}:{re.sub(r'[^A-Za-z0-9_.-]', '_', version)}-{deployment}"


def labels(chute: str, version: str, deployment: Optional[int] = None, service: Optional[str] = None
           ) -> Dict[str, str]:
    out = {LABEL_CHUTE: chute, LABEL_VERSION: version}
    if deployment is not None:
        out[LABEL_DEPLOYMENT] = str(deployment)
    if service is not None:
        out[LABEL_SERVICE] = service
    return out
