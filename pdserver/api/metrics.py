"""Prometheus metrics of the node and its chutes, in the text exposition format (authenticated like every route).

The values come from the same places as the JSON routes (telemetry, the event-driven container state cache), so
a scrape costs no Docker call when nothing changed. prometheus-client is imported on the first scrape.
"""
from twisted.internet import defer

from pdserver.api.routing import Call, RawResponse, RouteTable
from pdserver.auth.roles import Permission
from pdserver.monitor.chutes import StatusUnavailable


def _families(telemetry: dict, chutes: list):
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    def gauge(name, text, value, labels=None, label_values=()):
        family = GaugeMetricFamily(name, text, labels=labels)
        family.add_metric(list(label_values), value)
        return family

    yield gauge("paradrop_node_cpu_percent", "CPU use of the node (all cores), percent", telemetry["cpu"]["percent"])
    yield gauge("paradrop_node_load1", "Load average over one minute", telemetry["load"]["1m"])
    yield gauge("paradrop_node_memory_total_bytes", "Memory of the node", telemetry["memory"]["total"])
    yield gauge("paradrop_node_memory_used_bytes", "Memory in use", telemetry["memory"]["used"])
    yield gauge("paradrop_node_disk_used_bytes", "Disk in use under the state directory", telemetry["disk"]["used"])
    yield gauge("paradrop_node_uptime_seconds", "Time since the host booted", telemetry["uptime"])
    received = CounterMetricFamily("paradrop_node_interface_received_bytes", "Bytes received", labels=["interface"])
    sent = CounterMetricFamily("paradrop_node_interface_sent_bytes", "Bytes sent", labels=["interface"])
    for name, counters in telemetry["interfaces"].items():
        received.add_metric([name], counters["bytes_recv"])
        sent.add_metric([name], counters["bytes_sent"])
    yield received
    yield sent

    info = GaugeMetricFamily("paradrop_chute_info", "An installed chute (1), its version and recorded state",
                             labels=["chute", "version", "state"])
    running = GaugeMetricFamily("paradrop_service_running", "Whether a chute service's container runs",
                                labels=["chute", "service"])
    restarts = CounterMetricFamily("paradrop_service_restarts", "Restarts of a chute service's container by the engine",
                                   labels=["chute", "service"])
    memory = GaugeMetricFamily("paradrop_service_memory_limit_bytes", "Memory limit of a chute service",
                               labels=["chute", "service"])
    cpu_used = CounterMetricFamily("paradrop_chute_cpu_seconds", "CPU time used by a running chute service",
                                   labels=["chute", "service"])
    cpu_share = GaugeMetricFamily("paradrop_chute_cpu_fraction",
                                  "Share of one core a running chute service used over the last interval",
                                  labels=["chute", "service"])
    memory_used = GaugeMetricFamily("paradrop_chute_memory_bytes",
                                    "Memory a running chute service uses (less inactive file cache)",
                                    labels=["chute", "service"])
    for record, services in chutes:
        info.add_metric([record.name, record.version, record.state], 1)
        for svc in services:
            labels = [record.name, svc["name"]]
            running.add_metric(labels, 1 if svc["running"] else 0)
            restarts.add_metric(labels, svc["restart_count"])
            if svc["memory"]:
                memory.add_metric(labels, svc["memory"])
            usage = svc.get("usage")
            if usage is not None:
                cpu_used.add_metric(labels, usage["cpu_seconds"])
                memory_used.add_metric(labels, usage["memory_bytes"])
                if usage["cpu_fraction"] is not None:
                    cpu_share.add_metric(labels, usage["cpu_fraction"])
    yield from (info, running, restarts, memory, cpu_used, cpu_share, memory_used)


class MetricsResource:
    routes = RouteTable("info")

    def __init__(self, store, monitor, telemetry):
        self._store = store
        self._monitor = monitor
        self._telemetry = telemetry

    @routes.route("/metrics", "GET", permission=Permission.READ_CHUTES,
                  summary="Prometheus metrics of the node and its chutes (text exposition format 0.0.4)")
    @defer.inlineCallbacks
    def metrics(self, call: Call):
        from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
        telemetry = yield self._telemetry.current()
        records = self._store.list()
        yield self._monitor.usage(records)  # one read of every service's usage; the reads below reuse it
        chutes = []
        for record in records:
            try:
                services = yield self._monitor.services(record)
            except StatusUnavailable:
                services = []
            chutes.append((record, services))
        families = list(_families(telemetry, chutes))
        return RawResponse(generate_latest(_Collected(families)), CONTENT_TYPE_LATEST)


class _Collected:
    """A registry-like object for generate_latest: the families of one scrape."""

    def __init__(self, families):
        self._families = families

    def collect(self):
        return iter(self._families)
