"""Websocket routes: a resource whose protocol class is bound to one request's subject."""
from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory


def bound_websocket(protocol_class, **attributes) -> WebSocketResource:
    """Upgrade this request to ``protocol_class`` with ``attributes`` (the change, the chute...) set on it."""
    factory = WebSocketServerFactory()
    factory.protocol = type(protocol_class.__name__, (protocol_class,), attributes)
    return WebSocketResource(factory)
