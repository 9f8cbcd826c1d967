"""The Edge API: ParaDrop v1 paths, one module per resource, served by one router (pdserver.api.routing)."""
