"""Chute subnet allocation: never overlapping, the asked-for network or a clear error."""
import random
from ipaddress import IPv4Network as Net
from ipaddress import IPv6Network

import pytest

from pdserver.errors import Conflict, InvalidInput, Unavailable
from pdserver.sysconfig.subnets import allocate

POOL = Net("10.128.0.0/9")


def test_the_first_subnet_of_an_empty_pool():
    assert allocate(POOL, 24, []) == Net("10.128.0.0/24")


def test_allocations_never_overlap_until_the_pool_is_exhausted():
    pool, taken = Net("192.168.0.0/22"), []
    for _ in range(4):
        taken.append(allocate(pool, 24, taken))
    assert sorted(taken) == [Net(f"192.168.{i}.0/24") for i in range(4)]
    with pytest.raises(Unavailable) as e:
        allocate(pool, 24, taken)
    assert e.value.status == 503 and e.value.field == "system.chuteSubnetPool"


def test_a_freed_subnet_is_given_again_and_foreign_networks_of_any_size_are_skipped():
    taken = [Net("10.128.0.0/24"), Net("10.128.2.0/24")]
    assert allocate(POOL, 24, taken) == Net("10.128.1.0/24")
    # A /16 and a /30 inside the pool, an IPv6 network and a network outside the pool.
    taken = [Net("10.128.0.0/16"), Net("10.129.0.0/30"), IPv6Network("fd00::/64"), Net("192.168.1.0/24")]
    assert allocate(POOL, 24, taken) == Net("10.129.1.0/24")


def test_random_taken_sets_never_yield_an_overlap():
    rng = random.Random(7)
    pool = Net("10.0.0.0/20")
    for _ in range(200):
        taken = [Net((0x0A000000 + rng.randrange(0, 1 << 12), rng.choice([22, 24, 25, 28])), strict=False)
                 for _ in range(rng.randrange(0, 12))]
        try:
            got = allocate(pool, 24, taken)
        except Unavailable:
            assert all(any(t.overlaps(s) for t in taken) for s in pool.subnets(new_prefix=24))
            continue
        assert got.prefixlen == 24 and got.subnet_of(pool)
        assert not any(got.overlaps(t) for t in taken)
        assert all(any(t.overlaps(s) for t in taken) for s in pool.subnets(new_prefix=24) if s < got)


def test_a_wanted_network_is_given_when_free_and_a_conflict_naming_the_field_when_not():
    taken = [Net("10.128.0.0/24")]
    assert allocate(POOL, 24, taken, wanted=Net("172.20.0.0/24")) == Net("172.20.0.0/24")
    with pytest.raises(Conflict) as e:
        allocate(POOL, 24, taken, wanted=Net("10.128.0.128/25"))
    assert e.value.status == 409 and e.value.field == "requirements.ipv4_network"
    assert "10.128.0.0/24" in e.value.message


def test_a_prefix_outside_the_pool_is_invalid_input():
    for prefix in (8, 31):
        with pytest.raises(InvalidInput) as e:
            allocate(POOL, prefix, [])
        assert e.value.field == "system.chutePrefixSize"
