"""Starting another agent binary: the ``--version`` start check, and handing this process over to it.

A PyInstaller one-file binary that starts another must tell the other's bootloader to unpack itself afresh
(``PYINSTALLER_RESET_ENVIRONMENT=1``, PyInstaller 6.10+) and give back the library path the bootloader
changed; otherwise the new binary would run the old one's unpacked files.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

from agent.upgrade import START_CHECK_TIMEOUT_S

log = logging.getLogger("pointwatch.upgrade")


def child_env() -> dict:
    env = dict(os.environ)
    if getattr(sys, "frozen", False):
        env["PYINSTALLER_RESET_ENVIRONMENT"] = "1"
        original = env.pop("LD_LIBRARY_PATH_ORIG", None)
        if original is not None:
            env["LD_LIBRARY_PATH"] = original
        else:
            env.pop("LD_LIBRARY_PATH", None)
    return env


def start_check(path: str, version: str, timeout: float = START_CHECK_TIMEOUT_S) -> str | None:
    """None when ``<path> --version`` prints ``version``; else what went wrong (English, for the details)."""
    try:
        proc = subprocess.run([path, "--version"], stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout,
                              env=child_env())
    except subprocess.TimeoutExpired:
        return f"{path} --version did not answer within {timeout:g}s"
    except OSError as exc:
        return f"{path} --version could not start: {exc}"
    out = (proc.stdout or b"").decode("utf-8", errors="replace").strip()
    words = out.split()
    if proc.returncode != 0 or not words or words[-1] != version:
        err = (proc.stderr or b"").decode("utf-8", errors="replace").strip()[-300:]
        return f"{path} --version exited {proc.returncode} printing {out[:200]!r} (expected {version}) {err}".strip()
    return None


def replace_process(path: str, argv_tail: list[str] | None = None) -> None:
    """Become ``path`` with this process's arguments (Linux: exec, same PID for systemd; a Windows console:
    start it and exit). Returns only when that could not be done (OSError raised)."""
    argv = [path, *(sys.argv[1:] if argv_tail is None else argv_tail)]
    log.info("upgrade_handover path=%s argv=%s", path, argv[1:])
    for handler in list(logging.getLogger().handlers):
        handler.flush()
    if sys.platform == "win32":
        subprocess.Popen(argv, env=child_env(), close_fds=True)
        os._exit(0)
    os.execve(path, argv, child_env())
