"""The Edge API: every resource's routes in one router, served by one listener."""
import functools

from pdserver.api.accounts import AccountsResource
from pdserver.api.audit import AuditResource
from pdserver.api.changes import ChangesResource
from pdserver.api.chute_logs import ChuteLogsResource
from pdserver.api.chute_networks import ChuteNetworksResource
from pdserver.api.chutes import ChutesResource
from pdserver.api.config import ConfigResource
from pdserver.api.connections import ConnectionGuard, default_max_connections
from pdserver.api.dispatch import ApiResource
from pdserver.api.host_power import HostPowerResource
from pdserver.api.info import InfoResource
from pdserver.api.metrics import MetricsResource
from pdserver.api.network import NetworkResource, thd_devices
from pdserver.api.node_log import NodeLogResource
from pdserver.api.openapi import OpenApiResource
from pdserver.api.portal import PortalResource, SiteRoot, load
from pdserver.api.provision import ProvisionResource
from pdserver.api.routing import Router
from pdserver.api.site import ApiSite
from pdserver.api.snap import SnapResource
from pdserver.api.ssh_keys import SshKeysResource
from pdserver.api.status import StatusResource
from pdserver.chutes.networks import NetworkFacts
from pdserver.monitor.node_log import NODE_LOG
from pdserver.sysconfig.snapd import SnapdClient
from pdserver.sysconfig.ssh_keys import AuthorizedKeys


def add_resources(router: Router, *, settings, auth, queue, hostconfig_store, chutes, monitor, chute_requests,
                  run_in_thread, clock, started_at: float, names, network, telemetry, status_hub, cloud_link,
                  host_power, network_facts=NetworkFacts) -> None:
    """Every resource's routes on ``router`` (which may already be listening: it serves what it has).
    ``chute_requests`` (pdserver.chutes.requests) checks and queues chute changes; ``cloud_link`` is the node's
    CloudLink; ``host_power`` its IHostPower (pdserver.sysconfig.host_power)."""
    devices = functools.partial(run_in_thread, thd_devices)
    for resource in (AccountsResource(auth), InfoResource(started_at, clock, telemetry),
                     ChangesResource(queue), StatusResource(status_hub), MetricsResource(chutes, monitor, telemetry),
                     ChutesResource(chute_requests, chutes, monitor, run_in_thread),
                     ChuteLogsResource(chutes, monitor), ChuteNetworksResource(queue, chutes, names, network),
                     ConfigResource(settings, queue, hostconfig_store, devices, network, chutes, names),
                     NetworkResource(devices, network, chutes, names, network_facts),
                     AuditResource(auth.audit), ProvisionResource(cloud_link, settings.pdid),
                     NodeLogResource(NODE_LOG, clock),
                     SshKeysResource(AuthorizedKeys(settings.authorized_keys_path, settings.ssh_authorized_keys_path),
                                     auth.audit, run_in_thread),
                     HostPowerResource(host_power, queue, auth.audit),
                     SnapResource(SnapdClient(clock, settings.snapd_socket)),
                     OpenApiResource(router, settings.max_body_bytes, settings.max_upload_bytes)):
        router.add(resource, type(resource).routes)


def api_listener(settings, router: Router, auth, reactor, run_in_thread) -> ConnectionGuard:
    """The protocol factory the API listens with: connection limits around the Site around the router."""
    root = SiteRoot(ApiResource(router, auth, run_in_thread), PortalResource(load()))
    site = ApiSite(root, router, idle_timeout=settings.idle_timeout,
                   reactor=reactor, access_log=settings.log_level == "debug")
    return ConnectionGuard(site, per_address=settings.max_connections_per_address,
                           max_connections=settings.max_connections or default_max_connections(),
                           header_timeout=settings.header_timeout, reactor=reactor)
