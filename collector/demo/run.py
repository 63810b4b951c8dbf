"""`pointwatch-collector demo`: the collector on its store (SQLite in the data directory unless a database URL
is set), with the simulated county reporting and a real agent checking this machine."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from agent.vocabulary import DEFAULT_PROFILE
from collector.accounts import users
from collector.settings import Settings
from collector.store import points

LOCAL_POINT = ("620102001001", "本机演示服务点", "甘肃省/兰州市/城关区/演示镇/本机村")


def _agent_config(port: int, state_dir: Path) -> str:
    return f"""# written by `pointwatch-collector demo`
point: {{code: "{LOCAL_POINT[0]}", name: {LOCAL_POINT[1]}}}
collector: {{url: "http://127.0.0.1:{port}", timeout: 10s}}
state_dir: "{state_dir.as_posix()}"
intervals: {{network: 15s, devices: 60s, compliance: 60s, identity: 5m}}
core_network:
  timeout: 1s
  count: 3
  icmp: [{{target: 127.0.0.1, name: 本机回环}}]
  tcp: [{{target: "127.0.0.1:{port}", name: 采集端}}]
usage:
  staff_accounts: [{_login_name()}]
  allowed_ports: [22, {port}]
"""


def _login_name() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "root"


FLEET_INTERVAL_S = 15  # how often the live fleet sends; its points are registered at history.HISTORY_INTERVAL_S
DEMO_ADMIN = "admin"


def _demo_admin(store, data_dir: Path) -> str:
    """An admin over the whole tree; its password is made once and kept (0600) in the data directory."""
    import secrets

    from collector.store import StoreError

    secret = data_dir / "demo-admin-password.txt"
    if secret.exists():
        return secret.read_text().strip()
    password = secrets.token_urlsafe(9)
    try:
        users.create_user(store, DEMO_ADMIN, password, "admin", "/", person="demo-admin")
    except StoreError:  # the user exists but its password file was deleted: reset it
        users.set_password(store, DEMO_ADMIN, password)
    secret.write_text(password)
    secret.chmod(0o600)
    return password


def run_demo(settings: Settings, host: str, port: int) -> int:
    from collector.app import create_app
    from collector.cli.serve import serve
    from collector.demo import fleet as demo_fleet
    from collector.demo import history

    if _port_busy(host, port):
        print(f"端口 {port} 已被占用：请用 --port 换一个端口", file=sys.stderr)
        return 1
    store = settings.open_store()
    points.upsert_point(store, *LOCAL_POINT, profile=DEFAULT_PROFILE, report_interval_s=15)
    agent_dir = Path(settings.data_dir).resolve() / "demo-agent"
    agent_dir.mkdir(parents=True, exist_ok=True)
    cfg_path = agent_dir / "agent.yaml"
    cfg_path.write_text(_agent_config(port, agent_dir / "state"), encoding="utf-8")
    token_path = agent_dir / "state" / "token"
    if not token_path.exists():
        token_path.parent.mkdir(parents=True, exist_ok=True)
        token_path.write_text(users.create_token(store, "agent", point_code=LOCAL_POINT[0], description="demo agent"))
        os.chmod(token_path, 0o600)

    data_dir = Path(settings.data_dir)
    # Registered as reporting every HISTORY_INTERVAL_S, the interval of their written history (scoring and
    # silence read the point's interval; collector/demo/history.py says why), and from where it starts.
    sims = demo_fleet.seed(store, data_dir, history.HISTORY_INTERVAL_S, created_at=history.registered_from())
    admin_password = _demo_admin(store, data_dir)
    app = create_app(settings, store)
    history.first_start(app, sims, data_dir)  # the last 7 days, on the first start only
    scenario = history.live_scenario(history.written_start(data_dir))
    stop = threading.Event()

    def start_agent():
        while not _port_busy(host, port):
            time.sleep(0.2)
        threading.Thread(target=demo_fleet.run, args=(f"http://{host}:{port}", sims, FLEET_INTERVAL_S, stop, scenario),
                         daemon=True, name="demo-fleet").start()
        log = open(agent_dir / "agent.log", "ab")  # noqa: SIM115 - lives as long as the agent
        agent = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--config", str(cfg_path)],
                                 stdout=log, stderr=log)
        print(f"\n  pointwatch 演示已启动：http://{host}:{port}/\n"
              f"  管理员登录：用户名 {DEMO_ADMIN}，密码 {admin_password}\n"
              f"  演示县：{demo_fleet.COUNTY}，{len(sims)} 个模拟服务点 + 1 个检查本机的真实代理\n"
              f"  本机代理日志：{agent_dir / 'agent.log'}\n  按 Ctrl-C 退出。\n", flush=True)
        threading.Thread(target=_reap, args=(agent,), daemon=True).start()
        _AGENTS.append(agent)

    threading.Thread(target=start_agent, daemon=True).start()
    try:
        # Sixty-nine agents posting every 15 s would bury the URL under access-log lines.
        return serve(settings, host, port, app=app, access_log=False)
    finally:
        stop.set()
        for agent in _AGENTS:
            agent.terminate()


_AGENTS: list[subprocess.Popen] = []


def _reap(proc: subprocess.Popen) -> None:
    proc.wait()


def _port_busy(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0
