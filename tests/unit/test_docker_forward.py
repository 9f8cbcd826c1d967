"""DOCKER-USER rules of ours: rendered only from valid names, recognised only by our comment in `iptables -S`
output (another program's output: garbage lines and the owner's rules are left alone)."""
import pytest

from pdserver.errors import InvalidInput
from pdserver.sysconfig.docker_forward import COMMENT, forward_policy, our_rules, rules_for

LISTING = """-N DOCKER-USER
-A DOCKER-USER -s 198.51.100.0/24 -j DROP
-A DOCKER-USER -i pd1 -o eth0 -m comment --comment "paradrop chute network" -j ACCEPT
-A DOCKER-USER -i pd2 -o eth0 -m comment --comment "someone else's" -j ACCEPT
-A DOCKER-USER -i eth0 -o pd1 -m comment --comment "paradrop chute network" -j ACCEPT
-A DOCKER-USER -m comment --comment "unclosed
-A OTHER -i pd9 -m comment --comment "paradrop chute network" -j ACCEPT
-A DOCKER-USER -j RETURN
"""


def test_the_policy_is_read_from_the_listing():
    assert forward_policy("-P FORWARD DROP\n-A FORWARD -j DOCKER-USER\n") == "DROP"
    assert forward_policy("-P INPUT DROP\n-P FORWARD ACCEPT\n") == "ACCEPT"
    assert forward_policy("garbage\n") is None


def test_only_rules_with_our_comment_in_docker_user_are_ours():
    ours = our_rules(LISTING)
    assert ours == rules_for("eth0", ["pd1"])
    assert all(rule[-4:] == ("--comment", COMMENT, "-j", "ACCEPT") for rule in ours)


def test_one_rule_each_way_per_bridge_and_none_without_a_wan():
    assert rules_for(None, ["pd1"]) == []
    assert [r[:4] for r in rules_for("eth0", ["pd2", "pd1", "pd1"])] == [
        ("-i", "pd1", "-o", "eth0"), ("-i", "eth0", "-o", "pd1"), ("-i", "pd2", "-o", "eth0"),
        ("-i", "eth0", "-o", "pd2")]


@pytest.mark.parametrize("wan,bridge,field", [("-j", "pd1", "wan"), ("eth0", "-j", "bridge"),
                                               ("eth 0", "pd1", "wan"), ("eth0", "pd+", "bridge"),
                                               ("eth0", "pd1\n-F", "bridge"), ("x" * 16, "pd1", "wan")])
def test_hostile_names_never_reach_iptables(wan, bridge, field):
    with pytest.raises(InvalidInput) as refused:
        rules_for(wan, [bridge])
    assert refused.value.field == field
