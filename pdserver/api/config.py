"""Node configuration: settings, identity, the host configuration (changed through the queue) and pdconf."""
from twisted.internet import defer

from pdserver.api import pdconf
from pdserver.api.routing import Call, Response, RouteTable
from pdserver.auth.roles import Permission
from pdserver.chutes.networks import check_host_aps, configured_networks
from pdserver.sysconfig import hostconfig


class ConfigResource:
    routes = RouteTable("config")

    def __init__(self, settings, queue, hostconfig_store, devices, network, chutes, names):
        """``devices()``: a Deferred of the network devices present (pdserver.api.network.thd_devices);
        ``network`` the node's INetworkConfigurator, ``chutes`` its chute store, ``names`` its ChuteNames."""
        self._settings = settings
        self._queue = queue
        self._hostconfig = hostconfig_store
        self._devices = devices
        self._network = network
        self._chutes = chutes
        self._names = names

    @routes.route("/api/v1/config/settings", "GET", permission=Permission.READ_CONFIG,
                  summary="The daemon's effective settings (no secrets)")
    def settings(self, call: Call):
        return self._settings.public()

    @routes.route("/api/v1/config/hostconfig", "GET", permission=Permission.WRITE_CONFIG,
                  summary="The host configuration")
    def get_hostconfig(self, call: Call):
        return self._hostconfig.load()

    @routes.route("/api/v1/config/hostconfig", "PUT", permission=Permission.WRITE_CONFIG,
                  summary="Replace the host configuration (a change)", body=hostconfig.SCHEMA, status=202)
    def put_hostconfig(self, call: Call):
        config = hostconfig.validate(call.body)
        check_host_aps(config, [(r.name, r.networks) for r in self._chutes.list()])
        change = self._queue.submit("hostconfig", "hostconfig", call.username, {"config": config})
        return Response({"change_id": change.id}, 202)

    @routes.route("/api/v1/config/new-config", "GET", permission=Permission.WRITE_CONFIG,
                  summary="A host configuration made from the devices present (not applied; takes nothing in use)")
    def new_config(self, call: Call):
        return self._devices().addCallback(hostconfig.new_config)

    @routes.route("/api/v1/config/pdconf", "GET", permission=Permission.WRITE_CONFIG,
                  summary="What the node has configured, as ParaDrop's list of config sections (type, name, "
                          "comment, success, age): host interfaces and radios, chute networks, their dnsmasq and "
                          "hostapd children (state, restarts, crash loop), the firewall, NetworkManager")
    @defer.inlineCallbacks
    def pdconf(self, call: Call):
        status = yield self._network.status()
        networks = configured_networks(self._names, self._chutes.list())
        return pdconf.sections(status, networks, self._hostconfig.load())
