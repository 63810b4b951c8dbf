"""A throw-away network of namespaces for the agent's network tests (and the cycle benchmark).

    agent (A) ── vc0 10.10.1.1/24 ──── vc1 10.10.1.20/24 ── core (C): ping, TCP 443, DNS, HTTPS 8443
      │                                    (10.10.9.0/24 is routed to C, which does not forward: a black hole)
      └─ vi0 198.51.100.1/24 ─────── vi1 198.51.100.53/24 ── "internet" (I): ping, TCP 53, DNS

Namespace names carry the pid, veths are created inside the namespaces (no names in the host's own
namespace), and everything is deleted on teardown, so several test runs on one machine never collide.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORE_IP, AGENT_CORE_IP = "10.10.1.20", "10.10.1.1"
INTERNET_IP, AGENT_INTERNET_IP = "198.51.100.53", "198.51.100.1"
BLACKHOLE_NET = "10.10.9.0/24"


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


class Topology:
    def __init__(self, tag: str = "t"):
        base = f"pw3{tag}{os.getpid()}"
        self.agent, self.core, self.internet = f"{base}a", f"{base}c", f"{base}i"
        self.servers: list[subprocess.Popen] = []

    # -- life cycle --------------------------------------------------------------------------------
    def up(self) -> Topology:
        try:
            for ns in (self.agent, self.core, self.internet):
                ip("netns", "add", ns)
                ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", self.agent, "link", "add", "vc0", "type", "veth", "peer", "name", "vc1", "netns", self.core)
            ip("-n", self.agent, "link", "add", "vi0", "type", "veth", "peer", "name", "vi1", "netns", self.internet)
            for ns, dev, addr in ((self.agent, "vc0", f"{AGENT_CORE_IP}/24"), (self.core, "vc1", f"{CORE_IP}/24"),
                                  (self.agent, "vi0", f"{AGENT_INTERNET_IP}/24"),
                                  (self.internet, "vi1", f"{INTERNET_IP}/24")):
                ip("-n", ns, "addr", "add", addr, "dev", dev)
                ip("-n", ns, "link", "set", dev, "up")
            ip("-n", self.agent, "route", "add", BLACKHOLE_NET, "via", CORE_IP)
            # `ip netns exec` bind-mounts this over /etc/resolv.conf: the core DNS first, then the "internet" one.
            conf = Path("/etc/netns") / self.agent
            conf.mkdir(parents=True, exist_ok=True)
            (conf / "resolv.conf").write_text(
                f"nameserver {CORE_IP}\nnameserver {INTERNET_IP}\noptions timeout:1 attempts:1\n")
        except BaseException:
            self.down()
            raise
        return self

    def down(self) -> None:
        for proc in self.servers:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        self.servers.clear()
        for ns in (self.agent, self.core, self.internet):
            ip("netns", "del", ns, check=False)
        shutil.rmtree(Path("/etc/netns") / self.agent, ignore_errors=True)

    def __enter__(self) -> Topology:
        return self.up()

    def __exit__(self, *exc) -> None:
        self.down()

    # -- helpers -----------------------------------------------------------------------------------
    def exec_args(self, ns: str, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", ns, *cmd]

    def start_server(self, ns: str, *args: str) -> subprocess.Popen:
        proc = subprocess.Popen(self.exec_args(ns, sys.executable, str(HERE / "nsserver.py"), *args),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.servers.append(proc)
        line = proc.stdout.readline()
        if line.strip() != "ready":
            proc.kill()
            raise RuntimeError(f"server in {ns} did not start: {line!r} {proc.stderr.read()}")
        return proc

    def stop_server(self, proc: subprocess.Popen) -> None:
        proc.kill()
        proc.wait(5)
        self.servers.remove(proc)

    def cut_internet(self) -> None:
        """Send the "internet" through the core host, which drops it: probes time out, as behind a firewall."""
        ip("-n", self.agent, "route", "replace", f"{INTERNET_IP.rsplit('.', 1)[0]}.0/24", "via", CORE_IP)

    def restore_internet(self) -> None:
        ip("-n", self.agent, "route", "replace", f"{INTERNET_IP.rsplit('.', 1)[0]}.0/24", "dev", "vi0",
           "proto", "kernel", "scope", "link", "src", AGENT_INTERNET_IP)
