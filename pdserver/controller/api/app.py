"""The controller's API: every resource's routes in one router, served by one guarded listener, with the
dashboard's static pages at ``/`` and ``/web/``."""
from pdserver.api.connections import ConnectionGuard
from pdserver.api.portal import PortalResource, SiteRoot, load_dashboard
from pdserver.api.routing import Router
from pdserver.api.site import ApiSite
from pdserver.controller.api.accounts import AccountsResource
from pdserver.controller.api.auth import ControllerApiResource, authorize
from pdserver.controller.api.deployments import DeploymentsResource
from pdserver.controller.api.meta import MetaResource
from pdserver.controller.api.node_stream import NodeStreamResource
from pdserver.controller.api.nodes import NodesResource
from pdserver.controller.api.store import StoreResource


def build_router(settings, *, accounts, nodes, store, deployments, audit, events, node_events, links,
                 run_in_thread, reactor, router_joined=lambda: None) -> Router:
    router = Router(accounts, settings.max_body_bytes, settings.max_upload_bytes, authorize=authorize)
    for resource in (AccountsResource(accounts), NodesResource(nodes, deployments),
                     NodeStreamResource(nodes, node_events),
                     StoreResource(store, run_in_thread, settings.max_upload_bytes),
                     DeploymentsResource(deployments, events, reactor),
                     MetaResource(router, links, audit, settings.max_body_bytes, settings.max_upload_bytes,
                                  router_joined)):
        router.add(resource, type(resource).routes)
    return router


def api_listener(settings, router: Router, accounts, reactor, run_in_thread) -> ConnectionGuard:
    root = SiteRoot(ControllerApiResource(router, accounts, run_in_thread), PortalResource(load_dashboard()))
    site = ApiSite(root, router, idle_timeout=settings.idle_timeout, reactor=reactor)
    return ConnectionGuard(site, per_address=settings.max_connections_per_address,
                           max_connections=settings.max_connections, header_timeout=settings.header_timeout,
                           reactor=reactor)
