"""Node configuration: settings, identity, and the host configuration (changed through the queue)."""
from pdserver.api.routing import Call, Response, RouteTable
from pdserver.auth.roles import Permission
from pdserver.sysconfig import hostconfig


class ConfigResource:
    routes = RouteTable("config")

    def __init__(self, settings, queue, hostconfig_store, devices):
        """``devices()``: a Deferred of the network devices present (pdserver.api.network.thd_devices)."""
        self._settings = settings
        self._queue = queue
        self._hostconfig = hostconfig_store
        self._devices = devices

    @routes.route("/api/v1/config/settings", "GET", permission=Permission.READ_CONFIG,
                  summary="The daemon's effective settings (no secrets)")
    def settings(self, call: Call):
        return self._settings.public()

    @routes.route("/api/v1/config/pdid", "GET", permission=Permission.READ_CONFIG,
                  summary="The node's controller id (null until provisioned)")
    def pdid(self, call: Call):
        return {"pdid": self._settings.pdid}

    @routes.route("/api/v1/config/hostconfig", "GET", permission=Permission.WRITE_CONFIG,
                  summary="The host configuration")
    def get_hostconfig(self, call: Call):
        return self._hostconfig.load()

    @routes.route("/api/v1/config/hostconfig", "PUT", permission=Permission.WRITE_CONFIG,
                  summary="Replace the host configuration (a change)", body=hostconfig.SCHEMA, status=202)
    def put_hostconfig(self, call: Call):
        config = hostconfig.validate(call.body)
        change = self._queue.submit("hostconfig", "hostconfig", call.username, {"config": config})
        return Response({"change_id": change.id}, 202)

    @routes.route("/api/v1/config/new-config", "GET", permission=Permission.WRITE_CONFIG,
                  summary="A host configuration made from the devices present (not applied; takes nothing in use)")
    def new_config(self, call: Call):
        return self._devices().addCallback(hostconfig.new_config)
