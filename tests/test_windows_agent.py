"""The agent on Windows CPython: the official embeddable build, run by Wine, against real loopback services.

tests/windows/prepare.py makes the interpreter (3.10, the agent's floor, and 3.11) with the agent's Windows
wheels (psutil's Windows build, pywin32, …) and a private Wine prefix, once per build directory. Every test
here starts real ``python.exe -m agent.cli`` processes: their sockets go to servers on 127.0.0.1, their
state (token, SQLite outbox, logs) lives on the prefix's C: drive, their config is read from Z:.

What Wine is not: it has no WMI behind PowerShell (its powershell.exe is a stub that prints nothing and
exits 0), no WMI scripting properties over COM, no USB devices, no spooler queues, no real adapters in
WMI. So every fact falls back to Wine's real registry (through winreg) and psutil, as on a real PC with a
broken WMI repository: where those tell something (MachineGuid, an empty Print\\Printers key) the result
says so and names the source; where they do not (no Enum\\USB, no network class keys), the fact comes back
as an honest ``error`` naming its query. Parsing real WMI output is tested with recorded
output in test_platform_windows.py and test_devices_usb.py. psutil's process list raises WinError 87 for
every process under Wine; the agent must still read the names (Toolhelp32) and report them.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import free_port, require

pytestmark = pytest.mark.timeout(900)

POINT = "620102001001"
WIN_ROOT = "C:\\pointwatch-tests"


def win_dir(name: str) -> tuple[str, Path]:
    """A fresh folder on the prefix's C: drive: its Windows path and where Linux sees it."""
    from tests.windows.prepare import PREFIX

    linux = PREFIX / "drive_c" / "pointwatch-tests" / name
    shutil.rmtree(linux, ignore_errors=True)
    linux.parent.mkdir(parents=True, exist_ok=True)
    return f"{WIN_ROOT}\\{name}", linux


def zpath(path: Path) -> str:
    from tests.windows.prepare import wine_path

    return wine_path(path)


def agent_cmd(embed, *args: str) -> list[str]:
    return embed.command("-m", "agent.cli", *args)


def run_agent(embed, *args: str, timeout: float = 180, **env: str) -> subprocess.CompletedProcess:
    # Pipes on all three: Wine cannot hand a regular Linux file to Windows CPython as a std handle.
    return subprocess.run(agent_cmd(embed, *args), stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=timeout, env=embed.env(**env))


def out(proc: subprocess.CompletedProcess) -> str:
    """stdout as UTF-8, strictly: anything else (the ANSI code page, a lone surrogate) fails here."""
    return proc.stdout.decode("utf-8")


class _Health(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802
        body = b"ok" if self.path == "/health" else b"missing"
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def loopback(tmp_path):
    """A listening TCP port, an HTTP server and an HTTPS server (private CA) on 127.0.0.1, and a closed port."""
    from tests.certs import make_ca_and_cert

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    http = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    https = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    ca, cert, key = make_ca_and_cert(tmp_path / "tls", "127.0.0.1")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    # The handshake in the handler's thread: an agent killed mid-handshake must not wedge accept().
    https.socket = ctx.wrap_socket(https.socket, server_side=True, do_handshake_on_connect=False)
    for server in (http, https):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    ports = {"tcp": listener.getsockname()[1], "http": http.server_address[1], "https": https.server_address[1],
             "closed": free_port(), "ca": ca}
    yield ports
    for server in (http, https):
        server.shutdown()
        server.server_close()
    listener.close()


def check_config(tmp_path: Path, state: str, ports: dict, collector: str | None = None, network: str = "60s") -> Path:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"""
point: {{code: "{POINT}", name: 城关区某村医保服务点}}
collector: {{url: "{collector or f'http://127.0.0.1:{ports["closed"]}'}", timeout: 5s}}
state_dir: '{state}'
intervals: {{network: {network}, devices: 5m, compliance: 5m, identity: 5m}}
core_network:
  timeout: 2s
  count: 2
  ca_bundle: '{zpath(ports["ca"])}'
  icmp: [{{target: 127.0.0.1, name: 核心网关}}]
  tcp:
    - {{target: "127.0.0.1:{ports['tcp']}", name: 省医保信息平台}}
    - {{target: "127.0.0.1:{ports['closed']}", name: 关闭的端口}}
  https: [{{url: "https://127.0.0.1:{ports['https']}/health", name: 网上办理渠道}}]
isolation:
  internet_canaries: [{{target: "127.0.0.1:{ports['closed']}"}}]
  allowed_interfaces: [eth0]
  allowed_subnets: [10.0.0.0/8]
usage:
  forbidden_software: default
  required_processes: []
  allowed_ports: []
  staff_accounts: [operator]
  allowed_usb_serials: []
devices:
  - {{kind: kiosk, name: 自助服务一体机, host: 127.0.0.1, tcp: {ports['tcp']}}}
  - {{kind: queue, name: 自助取号机, http: "http://127.0.0.1:{ports['http']}/health"}}
  - {{kind: camera, name: 摄像头, host: 127.0.0.1, tcp: {ports['closed']}}}
  - {{kind: printer, name: 窗口打印机, local_printer: "HP LaserJet Pro M404"}}
  - {{kind: scanner, name: OCR扫描仪, usb: {{vid: "04c5"}}}}
""", encoding="utf-8")
    return cfg


@pytest.mark.parametrize("version", ["3.10", "3.11"])
def test_check_json_runs_the_whole_cycle_under_windows_cpython(windows, loopback, tmp_path, version):
    embed = windows[version]
    state, _ = win_dir(f"check-{version}")
    proc = run_agent(embed, "check", "--json", "--config", zpath(check_config(tmp_path, state, loopback)))
    stderr = proc.stderr.decode("utf-8")
    assert proc.returncode in (0, 1), stderr
    assert "Traceback" not in stderr and "\\u" not in stderr
    doc = json.loads(out(proc))
    assert doc["point"] == {"code": POINT, "name": "城关区某村医保服务点"}
    by = {(r["check"], r["target"]): r for r in doc["results"]}
    assert all(r["status"] in ("ok", "warn", "fail", "error") and r["message"] for r in doc["results"])
    assert doc["summary"] == {s: sum(r["status"] == s for r in doc["results"]) for s in ("ok", "warn", "fail", "error")}

    # The network, through Windows sockets to servers this test runs.
    assert by[("net.core.tcp", "省医保信息平台")]["status"] == "ok"
    closed = by[("net.core.tcp", "关闭的端口")]
    assert closed["status"] == "fail" and "拒绝连接" in closed["message"]
    assert by[("net.core.https", "网上办理渠道")]["status"] == "ok", by[("net.core.https", "网上办理渠道")]
    assert by[("net.core.icmp", "核心网关")]["status"] in ("ok", "warn")
    assert by[("isolation.internet", "互联网")]["status"] == "ok"
    devices = {r["target"]: r for r in doc["results"] if r["check"].startswith("device.")}
    assert devices["自助服务一体机"]["status"] == "ok"
    assert devices["自助取号机"]["status"] == "ok"
    assert devices["摄像头"]["status"] == "fail"

    # WMI answers nothing under Wine: each fact falls back to Wine's real registry (and psutil), and says so;
    # where that has nothing to tell either, the fact is an error naming the query, never "not there".
    # Wine's Print\Printers key exists and holds no queue: the printer is seen not installed.
    printer = devices["窗口打印机"]
    assert printer["status"] == "fail" and "未安装" in printer["message"], printer
    assert "registry" in json.dumps(printer["details"]["methods"], ensure_ascii=False), printer
    # Wine's registry has no Enum\USB, no network class keys, and a Z: drive MountedDevices does not place.
    scanner = devices["OCR扫描仪"]
    assert scanner["status"] == "error" and "Win32_PnPEntity" in scanner["message"], scanner
    interfaces = by[("isolation.interfaces", "本机网卡")]
    assert interfaces["status"] == "error" and "Win32_NetworkAdapter" in interfaces["message"]
    media = by[("usage.removable_media", "移动存储")]
    assert media["status"] == "error" and "Win32_DiskDrive" in media["message"]

    # psutil's Windows build raises WinError 87 per process under Wine: the names still come (Toolhelp32).
    processes = by[("usage.processes", "本机进程")]
    assert processes["status"] == "ok", processes
    assert processes["details"]["process_count"] >= 2  # at least wine's services and this python.exe
    # The registry read (MachineGuid) works; the SMBIOS ids (WMI) do not, and the registry's BIOS key has no
    # serial or UUID: too little to identify the PC.
    fingerprint = by[("identity.fingerprint", "本机")]
    assert fingerprint["status"] == "error" and "Win32_ComputerSystemProduct" in fingerprint["message"], fingerprint
    assert by[("host.resources", "本机")]["status"] in ("ok", "warn")
    assert "C:\\" in by[("host.resources", "本机")]["message"]


def console_code_page(embed) -> int:
    proc = subprocess.run(embed.command("-c", "import ctypes; print(ctypes.WinDLL('kernel32').GetConsoleOutputCP())"),
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=60, env=embed.env())
    return int(proc.stdout.decode().strip())


def test_console_prints_chinese_on_a_western_code_page(windows, loopback, tmp_path):
    embed = windows["3.10"]
    cp = console_code_page(embed)
    assert cp not in (65001, 936, 54936), f"the test needs a console that is neither UTF-8 nor GBK, got {cp}"
    state, _ = win_dir("console")
    cfg = zpath(check_config(tmp_path, state, loopback))
    table = run_agent(embed, "check", "--config", cfg)
    text = out(table)
    assert f"服务点 {POINT} 城关区某村医保服务点" in text and "合计：" in text and "\\u" not in text
    assert "Traceback" not in table.stderr.decode("utf-8")
    # stderr too: the config error a person sees first (it printed \u914d\u7f6e… escapes before).
    bad = run_agent(embed, "check", "--config", zpath(tmp_path / "missing.yaml"))
    assert bad.returncode == 2
    assert "配置错误" in bad.stderr.decode("utf-8")

    # A real Wine console on a terminal (cp 437): Python writes it through WriteConsoleW.
    script = shutil.which("script")
    require(script is not None, "'script' not found (install the Debian package 'bsdutils')")
    line = " ".join(f"'{a}'" for a in agent_cmd(embed, "check", "--config", cfg))
    tty = subprocess.run([script, "-qfec", line, "/dev/null"], stdin=subprocess.DEVNULL, capture_output=True,
                         timeout=180, env=embed.env(LANG="C.UTF-8"))
    screen = tty.stdout.decode("utf-8", "replace")
    assert "城关区某村医保服务点" in screen and "\\u" not in screen, screen[-2000:]


# -- enroll, run, kill, restart: the outbox on C: and a real collector --------------------------------------

class HeaderTap:
    """A TCP relay in front of the collector that notes each request line and its Content-Encoding."""

    def __init__(self, upstream: int):
        self.upstream, self.seen, self.port = upstream, [], 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream), timeout=10)
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, src, dst, note):
        try:
            while data := src.recv(65536):
                if note and data[:5] in (b"POST ", b"GET /"):
                    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower().split("\r\n")
                    enc = next((h.split(":", 1)[1].strip() for h in head if h.startswith("content-encoding:")), "")
                    self.seen.append((head[0].split(" ")[1], enc))
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.sock.close()


class Collector:
    """collector.cli serve on a fixed port, so it can be stopped and started again where the agent looks."""

    def __init__(self, workdir: Path):
        self.cmd = [sys.executable, "-m", "collector.cli", "--data-dir", str(workdir / "data")]
        self.workdir, self.port, self.proc = workdir, free_port(), None
        self.env = {k: v for k, v in os.environ.items() if k != "POINTWATCH_DATABASE_URL"}

    def cli(self, *args: str) -> str:
        return subprocess.run([*self.cmd, *args], check=True, capture_output=True, text=True, timeout=60,
                              env=self.env).stdout.strip()

    def start(self) -> None:
        log = open(self.workdir / "collector.log", "a")  # noqa: SIM115 - the process owns it
        self.proc = subprocess.Popen([*self.cmd, "serve", "--port", str(self.port)], stdout=log,
                                     stderr=subprocess.STDOUT, env=self.env, cwd=self.workdir)
        wait_for(lambda: self._healthy(), 40, "collector /healthz")

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)

    def seqs(self, token: str) -> list[int]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/api/v1/points/{POINT}/reports",
                                     headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return sorted(rep["seq"] for rep in json.loads(r.read())["reports"])


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


class Running:
    """`pointwatch-agent run` under Wine; its output is drained so a full pipe never stalls it."""

    def __init__(self, embed, cfg: str):
        self.lines: list[str] = []
        self.proc = subprocess.Popen(agent_cmd(embed, "run", "--config", cfg), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env=embed.env(POINTWATCH_AGENT_TEST_SPEEDUP="5"))
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for raw in self.proc.stdout:
            self.lines.append(raw.decode("utf-8", "replace"))

    def kill(self) -> None:
        """SIGKILL to the Windows process (Wine runs it as this Linux process): no clean shutdown at all."""
        self.proc.kill()
        self.proc.wait(30)


def test_enroll_run_kill_restart_nothing_lost(windows, loopback, tmp_path):
    embed = windows["3.10"]
    collector = Collector(tmp_path)
    collector.cli("points", "add", "--code", POINT, "--name", "城关区某村医保服务点", "--region",
                  "甘肃省/兰州市/城关区")
    admin = collector.cli("tokens", "create", "--role", "admin", "--person", "信息科")
    code = collector.cli("enroll-code", "create", "--point", POINT)
    collector.start()
    tap = HeaderTap(collector.port)
    state, state_linux = win_dir("run")
    cfg = zpath(check_config(tmp_path, state, loopback, collector=f"http://127.0.0.1:{tap.port}", network="5s"))
    agents: list[Running] = []
    try:
        enrolled = run_agent(embed, "enroll", "--config", cfg, "--code", code)
        assert enrolled.returncode == 0, out(enrolled) + enrolled.stderr.decode("utf-8")
        assert (state_linux / "token").read_text().strip()

        agents.append(Running(embed, cfg))
        wait_for(lambda: len(collector.seqs(admin)) >= 2, 120, "the first reports at the collector")

        # The collector goes away; the agent keeps checking into its outbox on C:, then dies hard.
        collector.stop()
        outbox = state_linux / "outbox.sqlite3"
        assert outbox.exists()
        time.sleep(8)  # network checks every second at speedup 5: a few reports wait in the outbox
        agents[-1].kill()
        status = run_agent(embed, "status", "--json", "--config", cfg)
        info = json.loads(out(status))
        assert info["outbox"] == "ok" and info["enrolled"] is True, info
        assert info["depth"] >= 1 and info["last_ack_at"], info
        assert info["state_dir"].lower() == state.lower()
        last_seq = info["last_seq"]

        # Back again: every report that waited arrives, once, in a gapless sequence.
        collector.start()
        agents.append(Running(embed, cfg))
        wait_for(lambda: max(collector.seqs(admin), default=0) >= last_seq, 120, f"seq {last_seq} delivered")
        agents[-1].kill()
        seqs = collector.seqs(admin)
        assert seqs == list(range(1, seqs[-1] + 1)), seqs  # each once, no gap
        # Every report ever written is at the collector or still waiting (the agent writes one a second,
        # so a few may have been written after the last acknowledgement): none lost.
        final = json.loads(out(run_agent(embed, "status", "--json", "--config", cfg)))
        assert final["last_seq"] - final["depth"] <= seqs[-1] <= final["last_seq"], (final, seqs[-1])
        text = out(run_agent(embed, "status", "--config", cfg))
        assert "已注册" in text and f"最新序号 {final['last_seq']}" in text, text
    finally:
        for a in agents:
            if a.proc.poll() is None:
                a.kill()
        collector.stop()
        tap.close()
    posts = [enc for path, enc in tap.seen if path == "/api/v1/reports"]
    assert posts and set(posts) == {"gzip"}, tap.seen
    log = (state_linux / "logs" / "agent.log").read_bytes().decode("utf-8")
    assert "agent_started" in log


# -- the self-contained exe ---------------------------------------------------------------------------------

def run_exe(windows, exe: Path, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.monotonic()
    proc = subprocess.run([windows["3.11"].command()[0], str(exe), *args], stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=180, env=windows["3.11"].env())
    return proc, time.monotonic() - t0


def test_self_contained_exe_runs_version_check_and_status(windows, exe, loopback, tmp_path):
    version, took = run_exe(windows, exe, "--version")
    assert version.returncode == 0 and out(version).strip() == "pointwatch-agent 0.1.0"
    print(f"pointwatch-agent.exe: {exe.stat().st_size / 1e6:.1f} MB, --version in {took:.1f} s under Wine")

    state, state_linux = win_dir("exe")
    cfg = zpath(check_config(tmp_path, state, loopback))
    check, _ = run_exe(windows, exe, "check", "--json", "--config", cfg)
    assert check.returncode in (0, 1), check.stderr.decode("utf-8")
    doc = json.loads(out(check))
    by = {(r["check"], r["target"]): r for r in doc["results"]}
    assert set(doc["summary"]) == {"ok", "warn", "fail", "error"}
    assert by[("net.core.tcp", "省医保信息平台")]["status"] == "ok"
    assert by[("net.core.https", "网上办理渠道")]["status"] == "ok"
    # The bundled catalogue is found inside the exe, and the frozen psutil/ctypes path reads processes.
    assert by[("usage.processes", "本机进程")]["status"] == "ok"
    assert by[("isolation.interfaces", "本机网卡")]["status"] == "error"

    status, _ = run_exe(windows, exe, "status", "--json", "--config", cfg)
    info = json.loads(out(status))
    assert info["outbox"] == "missing" and info["enrolled"] is False and status.returncode == 1
    assert info["state_dir"].lower() == state.lower()


# -- the Windows service, as far as Wine's service manager goes ----------------------------------------------

def _service_state(embed) -> str:
    code = ("import win32serviceutil as u\ntry: print(u.QueryServiceStatus('pointwatch-agent')[1])\n"
            "except Exception as e: print('gone')")
    proc = subprocess.run(embed.command("-c", code), stdin=subprocess.DEVNULL, capture_output=True, timeout=60,
                          env=embed.env())
    return proc.stdout.decode().strip()


def test_service_install_runs_the_agent_through_the_service_manager(windows, loopback, tmp_path):
    """`service install` through pywin32 into Wine's SCM, which starts `python.exe -m agent.cli service-host`
    (auto start): the dispatcher calls SvcDoRun, which reads the config path from the service's registry
    key and runs the agent, whose log and outbox appear on C:. What Wine does not do like Windows: it has no
    SERVICE_CONFIG_FAILURE_ACTIONS_FLAG (install warns and goes on), it starts an auto-start service at once,
    and its stop does not reach SERVICE_STOPPED in a bounded time; SvcStop's clean stop is the same
    Agent.stop() that `run` uses (test_agent_service.py), and removal is checked here."""
    embed = windows["3.10"]
    state, state_linux = win_dir("service")
    cfg = zpath(check_config(tmp_path, state, loopback))
    try:
        installed = run_agent(embed, "service", "install", "--config", cfg)
        text = out(installed)
        assert installed.returncode == 0 and "Service installed" in text, text + installed.stderr.decode()
        if _service_state(embed) != "4":  # Windows proper: installed stopped; start it
            assert run_agent(embed, "service", "start").returncode == 0
        log = state_linux / "logs" / "agent.log"
        wait_for(lambda: log.exists() and "agent_started" in log.read_bytes().decode("utf-8"), 60,
                 "the service's agent to start")
        assert (state_linux / "outbox.sqlite3").exists()
        assert _service_state(embed) == "4"  # SERVICE_RUNNING
    finally:
        run_agent(embed, "service", "stop")
        removed = run_agent(embed, "service", "remove")
        # Wine leaves the service STOP_PENDING: end its host process (ours, found by our prefix), and the
        # service manager then deletes the service it had marked for deletion.
        _end_service_hosts()
    assert removed.returncode == 0 and "Service removed" in out(removed)
    wait_for(lambda: _service_state(embed) == "gone", 60, "the removed service to disappear")


def _end_service_hosts() -> None:
    import psutil

    from tests.windows.prepare import PREFIX

    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if "service-host" not in " ".join(proc.info["cmdline"] or []):
                continue
            if proc.environ().get("WINEPREFIX") == str(PREFIX):
                proc.kill()
                proc.wait(20)
        except (psutil.Error, OSError):
            pass
