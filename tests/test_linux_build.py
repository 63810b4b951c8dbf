"""The self-contained Linux agent (dist/linux-<arch>/pointwatch-agent, `make linux-agent`) for Kylin/UOS
PCs whose own Python is older than 3.10: built by PyInstaller from its spec (tests/linux/build.py, cached),
then run where no Python exists at all, a root of its own holding nothing but the binary, glibc's libraries
and zlib (what every Linux distribution has), entered with unshare(1) in new mount and PID namespaces with
a fresh /proc. The network is the host's, so its checks reach a TCP server on 127.0.0.1 this test runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from tests.linux import build as linux_build

# glibc's own libraries (and zlib, which the PyInstaller bootloader links): the only things the binary may
# take from the PC. Kylin V10 and UOS 20 ship them all.
SYSTEM_LIBS = ("libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0", "librt.so.1", "libutil.so.1",
               "libz.so.1", "libgcc_s.so.1")
LIBDIR = Path("/lib/x86_64-linux-gnu")
LOADER = Path("/lib64/ld-linux-x86-64.so.2")
# Kylin V10 SP1-SP3 ships glibc 2.28, UOS 20 glibc 2.28: the floor a binary for them must stay at.
KYLIN_V10_GLIBC = (2, 28)

@pytest.fixture(scope="module")
def binary() -> Path:
    return linux_build.build()


@pytest.fixture
def no_python_root(tmp_path, binary) -> Path:
    """A root with the agent binary, glibc and zlib, and nothing else: no Python, no site-packages."""
    root = tmp_path / "root"
    for sub in ("lib/x86_64-linux-gnu", "lib64", "tmp", "proc", "etc/pointwatch", "var/lib/pointwatch-agent"):
        (root / sub).mkdir(parents=True)
    (root / "tmp").chmod(0o1777)
    shutil.copy2(LOADER, root / "lib64" / LOADER.name)
    for name in SYSTEM_LIBS:
        shutil.copy2(LIBDIR / name, root / "lib" / "x86_64-linux-gnu" / name)  # copy2 follows the symlinks
    shutil.copy2(binary, root / "pointwatch-agent")
    assert not [p for p in root.rglob("*python*")], "the root must hold no Python"
    return root


@pytest.fixture
def tcp_server():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    yield srv.getsockname()[1]
    srv.close()


def in_root(root: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the agent inside ``root`` with an empty environment: no PATH, no PYTHONHOME, no PYTHONPATH."""
    if not shutil.which("unshare"):
        pytest.fail("unshare(1) not found (install the Debian package 'util-linux')")
    cmd = ["unshare", "--mount", "--pid", "--fork", f"--root={root}", "--mount-proc=/proc",
           "/pointwatch-agent", *args]
    return subprocess.run(cmd, env={"LANG": "C.UTF-8"}, stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=timeout)


def write_config(root: Path, port: int) -> str:
    (root / "etc" / "pointwatch" / "agent.yaml").write_text(f"""
point: {{code: "620102001001", name: 城关区某村医保服务点}}
collector: {{url: "http://127.0.0.1:9", timeout: 2s}}
state_dir: /var/lib/pointwatch-agent
core_network:
  timeout: 2s
  tcp: [{{target: "127.0.0.1:{port}", name: 省医保信息平台}}]
usage: {{staff_accounts: [operator]}}
""", encoding="utf-8")
    return "/etc/pointwatch/agent.yaml"


def test_binary_runs_version_check_and_status_without_python(no_python_root, tcp_server):
    root = no_python_root
    version = in_root(root, "--version")
    assert version.returncode == 0, version.stderr.decode("utf-8", "replace")
    assert version.stdout.decode().strip().startswith("pointwatch-agent ")

    cfg = write_config(root, tcp_server)
    check = in_root(root, "check", "--json", "--config", cfg)
    stderr = check.stderr.decode("utf-8", "replace")
    assert check.returncode in (0, 1) and "Traceback" not in stderr, stderr
    doc = json.loads(check.stdout.decode("utf-8"))
    by = {r["check"]: r for r in doc["results"]}
    assert by["net.core.tcp"]["status"] == "ok", by["net.core.tcp"]
    # The frozen psutil reads the namespace's own /proc: this binary is one of its processes.
    assert by["usage.processes"]["status"] == "ok" and by["usage.processes"]["details"]["process_count"] >= 1
    # No /sys, no /etc/machine-id in this root: the facts are missing, so the checks say error and name them.
    fingerprint = by["identity.fingerprint"]
    assert fingerprint["status"] == "error" and "/etc/machine-id" in fingerprint["message"], fingerprint
    # psutil sees the host's adapters, but without /sys their kind cannot be told: error, not "virtual".
    interfaces = by["isolation.interfaces"]
    assert interfaces["status"] == "error" and "/sys/class/net" in interfaces["message"], interfaces
    # The shipped forbidden-software catalogue is inside the binary.
    assert by["usage.processes"]["details"]["catalogue_size"] > 0

    status = in_root(root, "status", "--json", "--config", cfg)
    assert status.returncode in (0, 1), status.stderr.decode("utf-8", "replace")
    assert isinstance(json.loads(status.stdout.decode("utf-8")), dict)


def test_glibc_floor_is_stated(binary):
    """The newest GLIBC_ symbol version any part of the binary needs: the oldest glibc it runs on. A build
    on this Debian 12 machine needs more than Kylin V10's 2.28; docs/en/operations.md says how to build for
    it (on the oldest distribution supported). The test states the floor, so a change shows in CI."""
    floor, parts = linux_build.glibc_floor(binary)
    host = tuple(int(x) for x in os.confstr("CS_GNU_LIBC_VERSION").split()[1].split("."))
    assert (2, 17) <= floor <= host, (floor, host)
    # The numbers docs/en/operations.md states are the ones measured here: a build machine with another
    # glibc (or a build that no longer needs libpython's) must update what the operators are told.
    doc = (linux_build.REPO / "docs" / "en" / "operations.md").read_text(encoding="utf-8")
    stated = re.search(r"\(glibc (\d+\.\d+)\) with its CPython [\d.]+ the\s+floor is \*\*(\d+\.\d+)\*\*", doc)
    assert stated, "docs/en/operations.md no longer states the build machine's glibc and the floor"
    assert stated.groups() == (linux_build.version_text(host), linux_build.version_text(floor)), \
        (stated.groups(), host, floor, sorted(parts.items(), key=lambda kv: kv[1])[-3:])
    assert floor > KYLIN_V10_GLIBC, "this build now runs on Kylin V10: say so in the docs"
    print(f"glibc floor {linux_build.version_text(floor)} (host {linux_build.version_text(host)}); "
          f"Kylin V10 needs <= {linux_build.version_text(KYLIN_V10_GLIBC)}")
