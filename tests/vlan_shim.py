"""An 802.1Q sub-interface in user space, for kernels built without VLAN support (CONFIG_VLAN_8021Q).

`python -m tests.vlan_shim PARENT VLAN_ID` makes a TAP interface `PARENT.VLAN_ID` and bridges it to PARENT:
frames sent on the TAP leave PARENT tagged with VLAN_ID; frames arriving on PARENT with that tag come out
of the TAP untagged; everything else is ignored. The TAP lives as long as this process (kill it to remove
it). Tests use it only where `ip link add ... type vlan` is refused, so the wire carries real tags either way.
"""
import fcntl
import os
import select
import socket
import struct
import sys

TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI = 0x0002, 0x1000
ETH_P_ALL, ETH_P_8021Q = 0x0003, 0x8100
SOL_PACKET, PACKET_AUXDATA = 263, 8
TP_STATUS_VLAN_VALID = 0x10
AUXDATA = struct.Struct("IIIHHHH")  # struct tpacket_auxdata


def open_tap(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    return fd


def vlan_of(frame: bytes, ancdata) -> tuple:
    """(vlan id or None, the frame without its tag): the kernel moves a received tag into the auxdata."""
    for level, kind, data in ancdata:
        if level == SOL_PACKET and kind == PACKET_AUXDATA and len(data) >= AUXDATA.size:
            status, _, _, _, _, tci, _ = AUXDATA.unpack_from(data)
            if status & TP_STATUS_VLAN_VALID:
                return tci & 0xFFF, frame
    if len(frame) >= 18 and struct.unpack_from("!H", frame, 12)[0] == ETH_P_8021Q:
        return struct.unpack_from("!H", frame, 14)[0] & 0xFFF, frame[:12] + frame[16:]
    return None, frame


def run(parent: str, vlan_id: int) -> None:
    tap = open_tap(f"{parent}.{vlan_id}")
    wire = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    wire.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
    wire.bind((parent, 0))
    tag = struct.pack("!HH", ETH_P_8021Q, vlan_id)
    print("ready", flush=True)
    while True:
        readable, _, _ = select.select([tap, wire], [], [])
        if tap in readable:
            frame = os.read(tap, 65536)
            wire.send(frame[:12] + tag + frame[12:])
        if wire in readable:
            frame, ancdata, _, address = wire.recvmsg(65536, socket.CMSG_SPACE(AUXDATA.size))
            if address[2] == socket.PACKET_OUTGOING:
                continue
            vid, inner = vlan_of(frame, ancdata)
            if vid == vlan_id:
                os.write(tap, inner)


if __name__ == "__main__":
    run(sys.argv[1], int(sys.argv[2]))
