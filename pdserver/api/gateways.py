"""The Edge API on chute networks: chutes reach the API at their network's gateway address, so the node
listens there too (and not on every interface). One listener per installed chute's network, opened when a
chute's network comes up and closed when the chute is gone."""
from typing import Callable, Dict, Iterable

from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger


class ChuteGateways(Service):
    """``gateway_of(network)`` -> Deferred address (the engine's); ``networks()`` -> the networks installed
    chutes have now (the store's)."""

    log = Logger()

    def __init__(self, http, gateway_of: Callable[[str], defer.Deferred], networks: Callable[[], Iterable[str]]):
        self._http = http
        self._gateway_of = gateway_of
        self._networks = networks
        self._addresses: Dict[str, str] = {}

    @property
    def api_port(self) -> int:
        return self._http.port

    @defer.inlineCallbacks
    def serve(self, network: str):
        """Listen on ``network``'s gateway; fires with the address chutes use to reach the API."""
        address = yield self._gateway_of(network)
        previous = self._addresses.get(network)
        if previous is not None and previous != address:
            yield self._http.stop_listening_on(previous)
        yield self._http.listen_also(address)
        self._addresses[network] = address
        return address

    @defer.inlineCallbacks
    def sync(self):
        """Serve every installed chute's network (those that exist) and close the listeners of the others."""
        wanted = set(self._networks())
        for network in sorted(set(self._addresses) - wanted):
            address = self._addresses.pop(network)
            yield self._http.stop_listening_on(address)
            self.log.info("Edge API no longer listening on {address} ({network} is gone)", address=address,
                          network=network)
        for network in sorted(wanted - set(self._addresses)):
            try:
                yield self.serve(network)
            except Exception as e:
                self.log.info("chutes on {network} cannot reach the API yet: {error}", network=network,
                              error=str(e))

    def startService(self):
        super().startService()
        return self.sync()

    def stopService(self):
        super().stopService()
        self._addresses.clear()
