"""The cloud controller: node registry, users, chute store, deployments, its WAMP backend and HTTP API."""
