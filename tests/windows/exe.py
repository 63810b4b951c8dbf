"""Build dist/pointwatch-agent.exe from configs/pyinstaller/pointwatch-agent.spec: PyInstaller's Windows
wheel, run by the embeddable Windows CPython 3.11 under Wine (tests/windows/prepare.py makes both).

    python tests/windows/exe.py        (or `make exe`; tests/test_windows_exe.py calls build())

PyInstaller and its helpers (pefile, pywin32-ctypes: pip's Linux-side markers leave them out) are unpacked
into build/windows/pyinstaller/ and put on sys.path only for the build, so the agent's interpreter stays
as a point's PC would have it. The exe is rebuilt only when the agent's sources, the spec, the shipped
catalogues or the wheels change (a stamp beside it); a build takes about a minute, a cached one nothing.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.windows.prepare import BUILD, REPO, _pip, prepare, wine_path  # noqa: E402

PYINSTALLER = ["pyinstaller>=6.10", "pefile", "pywin32-ctypes"]
SPEC = REPO / "configs" / "pyinstaller" / "pointwatch-agent.spec"
DIST = REPO / "dist"
EXE = DIST / "pointwatch-agent.exe"
VERSION = "3.11"


def _inputs_digest(wheels: Path) -> str:
    digest = hashlib.sha256()
    files = sorted(REPO.glob("agent/**/*.py")) + [SPEC] + sorted((REPO / "configs").glob("*.yaml"))
    for f in files:
        digest.update(str(f.relative_to(REPO)).encode())
        digest.update(f.read_bytes())
    for w in sorted(wheels.glob("*.whl")):
        digest.update(w.name.encode())
    return digest.hexdigest()


def _pyinstaller_site() -> Path:
    wheels = BUILD / "cache" / "wheels-pyinstaller"
    site = BUILD / "pyinstaller"
    key = json.dumps(PYINSTALLER)
    stamp = site / ".stamp"
    if not (stamp.exists() and stamp.read_text() == key):
        shutil.rmtree(wheels, ignore_errors=True)
        shutil.rmtree(site, ignore_errors=True)
        wheels.mkdir(parents=True)
        _pip("download", "--platform", "win_amd64", "--python-version", VERSION, "--implementation", "cp",
             "--only-binary=:all:", *PYINSTALLER, "-d", str(wheels))
        site.mkdir(parents=True)
        for wheel in sorted(wheels.glob("*.whl")):
            with zipfile.ZipFile(wheel) as zf:
                zf.extractall(site)
        stamp.write_text(key)
    return site


def build() -> Path:
    embed = prepare((VERSION,))[VERSION]
    site = _pyinstaller_site()
    stamp = DIST / ".pointwatch-agent.exe.stamp"
    key = _inputs_digest(BUILD / "cache" / f"wheels-{VERSION}")
    if EXE.exists() and stamp.exists() and stamp.read_text() == key:
        return EXE
    work = BUILD / "pyinstaller-work"
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import PyInstaller.__main__ as m; "
            "m.run(['--noconfirm', '--log-level', 'WARN', '--distpath', sys.argv[2], '--workpath', sys.argv[3], "
            "sys.argv[4]])")
    proc = subprocess.run(embed.command("-c", code, wine_path(site), wine_path(DIST), wine_path(work),
                                        wine_path(SPEC)),
                          stdin=subprocess.DEVNULL, capture_output=True, env=embed.env(), timeout=900)
    if proc.returncode or not EXE.exists():
        raise RuntimeError(f"PyInstaller under Wine failed ({proc.returncode}):\n"
                           f"{proc.stderr.decode('utf-8', 'replace')[-4000:]}")
    stamp.write_text(key)
    return EXE


if __name__ == "__main__":
    import time

    t0 = time.monotonic()
    exe = build()
    print(f"{exe} ({exe.stat().st_size / 1e6:.1f} MB, {time.monotonic() - t0:.0f} s)")
