"""Websocket routes: a resource whose protocol is bound to one request's subject.

autobahn (about 8 MB of resident memory) is imported when the first websocket is opened, not at start: an idle
node serves no websocket. The route modules therefore write their protocols as plain classes holding the
callbacks (``onOpen``, ``onMessage``, ``onClose``...); ``bound_websocket`` puts autobahn's server protocol under
them, so ``sendMessage``, ``sendClose`` and ``state`` come from autobahn as with a subclass.
"""
from pdserver.api.routing import BEARER_SUBPROTOCOL


class _AcceptsBearerSubprotocol:
    """A browser that sent its token as subprotocols (pdserver.api.routing) needs one of them echoed back."""

    def onConnect(self, request):
        return BEARER_SUBPROTOCOL if BEARER_SUBPROTOCOL in request.protocols else None


def bound_websocket(protocol_class, **attributes):
    """Upgrade this request to ``protocol_class`` (over autobahn's server protocol) with ``attributes`` (the
    change, the chute...) set on it."""
    from autobahn.twisted.resource import WebSocketResource
    from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol

    factory = WebSocketServerFactory()
    bases = (protocol_class, _AcceptsBearerSubprotocol, WebSocketServerProtocol)
    factory.protocol = type(protocol_class.__name__, bases, attributes)
    return WebSocketResource(factory)
