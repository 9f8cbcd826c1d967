"""The executors of chute network steps: each turns one step's arguments into a call of the host network
configurator (pdserver.sysconfig.interfaces.INetworkConfigurator); all are idempotent, as recovery needs."""
from twisted.internet import defer

from pdserver import errors


class NetworkActions:
    def __init__(self, network, engine):
        """``network`` configures the host; ``engine`` tells the process (network namespace) of a container."""
        self._network = network
        self._engine = engine

    def actions(self) -> dict:
        return {name: getattr(self, name) for name in (
            "ensure_bridge", "ensure_vlan", "ensure_ap_interface", "set_master", "remove_link", "start_dhcp",
            "stop_dhcp", "start_ap", "stop_ap", "attach_interface", "give_radio", "release_radio", "apply_firewall")}

    def ensure_bridge(self, args, progress):
        return self._network.ensure_bridge(args["name"], args["address"])

    def ensure_vlan(self, args, progress):
        return self._network.ensure_vlan(args["parent"], args["vlan_id"], args["name"], args["master"])

    def ensure_ap_interface(self, args, progress):
        return self._network.ensure_ap_interface(args["phy"], args["name"])

    def set_master(self, args, progress):
        return self._network.set_master(args["link"], args["master"])

    def remove_link(self, args, progress):
        return self._network.remove_link(args["name"])

    def start_dhcp(self, args, progress):
        return self._network.start_dhcp(args["child"], args["bridge"], args["address"], args["start"],
                                        args["limit"], args["leasetime"], args["dns"])

    def stop_dhcp(self, args, progress):
        return self._network.stop_dhcp(args["child"], args["bridge"])

    def start_ap(self, args, progress):
        options = {k: v for k, v in args.items() if k not in ("child", "chute")}
        return self._network.start_ap(args["child"], options)

    def stop_ap(self, args, progress):
        return self._network.stop_ap(args["child"])

    @defer.inlineCallbacks
    def attach_interface(self, args, progress):
        state = yield self._engine.inspect_container(args["container"])
        if state is None or not state.running or not state.pid:
            raise errors.Conflict(f"container {args['container']} is not running: its interface "
                                  f"{args['inner']} cannot be given")
        yield self._network.attach_interface(state.pid, args["bridge"], args["host_name"], args["inner"],
                                             args["address"], args.get("mac"))

    @defer.inlineCallbacks
    def give_radio(self, args, progress):
        state = yield self._engine.inspect_container(args["container"])
        if state is None or not state.running or not state.pid:
            raise errors.Conflict(f"container {args['container']} is not running: radio {args['phy']} cannot be "
                                  f"given as its {args['inner']}")
        yield self._network.give_radio(state.pid, args["phy"], args["inner"], args["frequency"])

    @defer.inlineCallbacks
    def release_radio(self, args, progress):
        pid = None
        if args.get("container"):
            state = yield self._engine.inspect_container(args["container"])
            pid = state.pid if state is not None and state.running else None
        yield self._network.release_radio(args["phy"], pid)

    def apply_firewall(self, args, progress):
        return self._network.apply_firewall(args["wan"], args["networks"])
