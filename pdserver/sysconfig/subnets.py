"""Chute subnets from the host's pool (``system.chuteSubnetPool`` / ``system.chutePrefixSize``).

Pure: the caller passes every network already in use (other chutes', the LAN's), so two chute networks
never overlap and a chute never gets a subnet that collides with the node's own.
"""
from ipaddress import IPv4Network
from typing import Iterable, Optional

from pdserver.errors import Conflict, InvalidInput, Unavailable

WANTED_FIELD = "requirements.ipv4_network"


def allocate(pool: IPv4Network, prefix: int, taken: Iterable[IPv4Network],
             wanted: Optional[IPv4Network] = None) -> IPv4Network:
    """The lowest free /``prefix`` in ``pool``, or ``wanted`` when a chute asks for its own network.

    Conflict when ``wanted`` overlaps a network in use; Unavailable when the pool has no free subnet left.
    """
    taken = [net for net in taken if net.version == 4]
    if wanted is not None:
        clash = next((net for net in taken if net.overlaps(wanted)), None)
        if clash is not None:
            raise Conflict(f"{wanted} overlaps {clash}, which is in use", field=WANTED_FIELD)
        return wanted
    if not pool.prefixlen <= prefix <= 30:
        raise InvalidInput(f"prefix size {prefix} must be between the pool's ({pool.prefixlen}) and 30",
                           field="system.chutePrefixSize")
    size = 1 << (32 - prefix)
    blocking = sorted((int(net.network_address), int(net.broadcast_address)) for net in taken if net.overlaps(pool))
    start, last = int(pool.network_address), int(pool.broadcast_address)
    while start + size - 1 <= last:
        end = start + size - 1
        clash = next(((low, high) for low, high in blocking if low <= end and high >= start), None)
        if clash is None:
            return IPv4Network((start, prefix))
        start = -(-(clash[1] + 1) // size) * size  # the next aligned block after the clash
    raise Unavailable(f"no free /{prefix} left in the chute subnet pool {pool}", field="system.chuteSubnetPool")
