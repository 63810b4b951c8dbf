"""Linux listeners from /proc/net with owners cached per socket: the same answer psutil gives, cheaper."""

from __future__ import annotations

import os
import socket
import sys

import psutil
import pytest

from agent.platform import Listener, Platform
from agent.platform.linux import LinuxPlatform, parse_proc_net_sockets

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

TCP6 = """  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 23456 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 34567 1 0000000000000000 20 4 30 10 -1
"""


def test_parse_keeps_listening_sockets_only():
    assert parse_proc_net_sockets(TCP6, ipv6=True, tcp=True) == [("::", 22, 23456)]


def test_own_listening_sockets_found_with_owner_and_same_as_psutil():
    tcp, udp = socket.socket(), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        tcp.bind(("0.0.0.0", 0))
        tcp.listen(1)
        udp.bind(("127.0.0.1", 0))
        me = psutil.Process(os.getpid()).name()
        platform = LinuxPlatform()
        for _ in range(2):  # the second call answers from the owner cache
            found = set(platform.listeners())
            assert Listener("tcp", "0.0.0.0", tcp.getsockname()[1], os.getpid(), me) in found
            assert Listener("udp", "127.0.0.1", udp.getsockname()[1], os.getpid(), me) in found
        ours = {tcp.getsockname()[1], udp.getsockname()[1]}
        assert {x for x in found if x.port in ours} == {x for x in Platform.listeners(platform) if x.port in ours}
    finally:
        tcp.close()
        udp.close()
    assert not {x for x in platform.listeners() if x.port in ours}
