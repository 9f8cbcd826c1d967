"""A chute's host networks and their wireless context: subnets, DHCP leases, the access point's status and
stations, its SSID. A chute's own token reaches these for its own networks (its local wireless context)."""
import copy

from twisted.internet import defer

from pdserver import errors
from pdserver.api.routing import Call, Response, RouteTable
from pdserver.api.websocket import bound_websocket
from pdserver.auth.roles import Permission
from pdserver.chutes import checks
from pdserver.chutes.networks import ap_child, configured_networks
from pdserver.sysconfig.hostapd import validate_mac

_SSID_BODY = {"type": "object", "required": ["ssid"], "additionalProperties": False,
              "properties": {"ssid": {"type": "string", "minLength": 1, "maxLength": 32}}}


MAX_COMMAND = 256


class HostapdControlProtocol:
    """Each text message is one hostapd control command (HostapdControl's whitelist: STATUS, STA-FIRST,
    DEAUTHENTICATE <mac>...); the answer is hostapd's reply text, or ``FAIL <why>``."""

    control = None

    def onMessage(self, payload, isBinary):
        if isBinary or len(payload) > MAX_COMMAND:
            self._reply(f"FAIL commands are text of at most {MAX_COMMAND} bytes")
            return
        d = self.control.command(payload.decode("utf-8", "replace").strip())
        d.addCallbacks(self._reply, lambda f: self._reply(
            f"FAIL {f.value.message}" if isinstance(f.value, errors.Error) else "FAIL hostapd did not answer"))

    def _reply(self, text):
        if self.state == self.STATE_OPEN:
            self.sendMessage(text.encode(), isBinary=False)

    def onClose(self, wasClean, code, reason):
        if self.control is not None:
            self.control.close()


class ChuteNetworksResource:
    routes = RouteTable("chutes")

    def __init__(self, queue, store, names, network):
        """``network`` is the node's INetworkConfigurator (leases, access point control)."""
        self._queue = queue
        self._store = store
        self._names = names
        self._network = network

    def _networks(self, record):
        return [{"name": n.interface, "type": n.type, "service": n.service, "subnet": n.subnet, "radio": n.radio,
                 "vlan_id": n.vlan_id, "bridge": n.bridge} for n in configured_networks(self._names, [record])]

    def _network_of(self, chute: str, net: str) -> dict:
        """``net`` is an interface name (``wlan0``) or, when services share one, ``service.interface``."""
        found = [n for n in self._networks(checks.installed(self._store, chute))
                 if net in (n["name"], f"{n['service']}.{n['name']}")]
        if len(found) != 1:
            raise errors.NotFound(f"chute {chute} has no network {net}" if not found else
                                  f"{net} names several networks of {chute}; use service.interface", field="network")
        return found[0]

    def _access_point(self, chute: str, net: str):
        network = self._network_of(chute, net)
        if network["type"] != "wifi-ap":
            raise errors.NotFound(f"network {net} of {chute} is not an access point", field="network")
        control = self._network.access_point(ap_child(network["bridge"]))
        if control is None:
            raise errors.Unavailable(f"the access point of {chute} {net} is not running")
        return control

    @defer.inlineCallbacks
    def _ask(self, control, method, *args):
        try:
            result = yield getattr(control, method)(*args)
        finally:
            control.close()
        return result

    @routes.route("/api/v1/chutes/<chute>/networks", "GET", permission=Permission.READ_CHUTES, chute_param="chute",
                  summary="The host networks (Wi-Fi AP, VLAN) a chute has")
    def networks(self, call: Call, chute):
        return self._networks(checks.installed(self._store, chute))

    @routes.route("/api/v1/chutes/<chute>/networks/<net>", "GET", permission=Permission.READ_CHUTES,
                  chute_param="chute", summary="One host network of a chute")
    def network(self, call: Call, chute, net):
        return self._network_of(chute, net)

    @routes.route("/api/v1/chutes/<chute>/networks/<net>/leases", "GET", permission=Permission.READ_CHUTES,
                  chute_param="chute", summary="The DHCP leases of a chute network")
    def leases(self, call: Call, chute, net):
        network = self._network_of(chute, net)
        if network["bridge"] is None:
            raise errors.NotFound(f"network {net} of {chute} is a monitor interface: it serves no leases",
                                  field="network")
        return self._network.leases(network["bridge"])

    @routes.route("/api/v1/chutes/<chute>/networks/<net>/hostapd_status", "GET", permission=Permission.READ_CHUTES,
                  chute_param="chute", summary="The access point's status as hostapd reports it")
    def hostapd_status(self, call: Call, chute, net):
        return self._ask(self._access_point(chute, net), "status")

    @routes.route("/api/v1/chutes/<chute>/networks/<net>/stations", "GET", permission=Permission.READ_CHUTES,
                  chute_param="chute", summary="The stations associated with the access point")
    def stations(self, call: Call, chute, net):
        return self._ask(self._access_point(chute, net), "stations")

    @routes.route("/api/v1/chutes/<chute>/networks/<net>/stations/<mac>", "GET", permission=Permission.READ_CHUTES,
                  chute_param="chute", summary="One associated station")
    @defer.inlineCallbacks
    def station(self, call: Call, chute, net, mac):
        mac = validate_mac(mac)
        stations = yield self._ask(self._access_point(chute, net), "stations")
        found = [s for s in stations if s.get("mac", "").lower() == mac.lower()]
        if not found:
            raise errors.NotFound(f"no station {mac} on {net}", field="mac")
        return found[0]

    @routes.route("/api/v1/chutes/<chute>/networks/<net>/stations/<mac>", "DELETE",
                  permission=Permission.MANAGE_CHUTE_NETWORKS, chute_param="chute",
                  summary="Disconnect a station from the access point")
    @defer.inlineCallbacks
    def kick_station(self, call: Call, chute, net, mac):
        mac = validate_mac(mac)
        yield self._ask(self._access_point(chute, net), "deauthenticate", mac)
        return {"mac": mac, "removed": True}

    @routes.route("/api/v1/chutes/<chute>/networks/<net>/hostapd_control/ws", "GET",
                  permission=Permission.MANAGE_CHUTE_NETWORKS, chute_param="chute", websocket=True,
                  summary="Websocket: hostapd control commands of the access point, one per message")
    def hostapd_control(self, call: Call, chute, net):
        return bound_websocket(HostapdControlProtocol, control=self._access_point(chute, net))

    @routes.route("/api/v1/chutes/<chute>/networks/<net>/ssid", "GET", permission=Permission.READ_CHUTES,
                  chute_param="chute", summary="The access point's SSID as configured")
    def get_ssid(self, call: Call, chute, net):
        network = self._network_of(chute, net)
        record = checks.installed(self._store, chute)
        interface = record.spec().service(network["service"])
        options = next(i for i in interface.interfaces if i.name == network["name"]).wireless_options()
        return {"ssid": options.get("ssid")}

    @routes.route("/api/v1/chutes/<chute>/networks/<net>/ssid", "PUT", permission=Permission.MANAGE_CHUTE_NETWORKS,
                  chute_param="chute", status=202, body=_SSID_BODY,
                  summary="Change the access point's SSID (kept in the chute's description: a change)")
    def put_ssid(self, call: Call, chute, net):
        network = self._network_of(chute, net)
        if network["type"] != "wifi-ap":
            raise errors.NotFound(f"network {net} of {chute} is not an access point", field="network")
        record = checks.installed(self._store, chute)
        description = copy.deepcopy(record.description)
        interface = description["services"][network["service"]]["interfaces"][network["name"]]
        interface.setdefault("wireless", {})["ssid"] = call.body["ssid"]
        change = self._queue.submit("update", chute, call.username, {
            "description": description, "source_dir": record.source_dir, "same_version_ok": True})
        return Response({"change_id": change.id}, 202)
