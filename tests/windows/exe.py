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
import re
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


def _pyinstaller(embed, site: Path, spec: Path, dist: Path, work: Path) -> None:
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import PyInstaller.__main__ as m; "
            "m.run(['--noconfirm', '--log-level', 'WARN', '--distpath', sys.argv[2], '--workpath', sys.argv[3], "
            "sys.argv[4]])")
    proc = subprocess.run(embed.command("-c", code, wine_path(site), wine_path(dist), wine_path(work),
                                        wine_path(spec)),
                          stdin=subprocess.DEVNULL, capture_output=True, env=embed.env(), timeout=900)
    if proc.returncode or not (dist / EXE.name).exists():
        raise RuntimeError(f"PyInstaller under Wine failed ({proc.returncode}):\n"
                           f"{proc.stderr.decode('utf-8', 'replace')[-4000:]}")


def build() -> Path:
    embed = prepare((VERSION,))[VERSION]
    site = _pyinstaller_site()
    stamp = DIST / ".pointwatch-agent.exe.stamp"
    key = _inputs_digest(BUILD / "cache" / f"wheels-{VERSION}")
    if EXE.exists() and stamp.exists() and stamp.read_text() == key:
        return EXE
    _pyinstaller(embed, site, SPEC, DIST, BUILD / "pyinstaller-work")
    stamp.write_text(key)
    return EXE


def build_variant(name: str, version: str, patches: dict[str, tuple[str, str]] | None = None) -> Path:
    """Another release of the exe for the upgrade tests: the same build from a copy of agent/ and configs/
    whose ``agent.__version__`` is ``version``, with each ``{file: (old, new)}`` text replacement applied (every
    ``old`` must occur); tests/linux/build.py ``build_variant`` does the same for Linux. Kept under
    build/windows/variants/<name>, rebuilt when its inputs change."""
    embed = prepare((VERSION,))[VERSION]
    site = _pyinstaller_site()
    home = BUILD / "variants" / name
    exe = home / "dist" / EXE.name
    stamp = home / ".stamp"
    key = json.dumps({"inputs": _inputs_digest(BUILD / "cache" / f"wheels-{VERSION}"), "version": version,
                      "patches": patches or {}}, sort_keys=True)
    if exe.exists() and stamp.exists() and stamp.read_text() == key:
        return exe
    src = home / "src"
    shutil.rmtree(src, ignore_errors=True)
    shutil.copytree(REPO / "agent", src / "agent", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "configs", src / "configs")
    init = src / "agent" / "__init__.py"
    text, n = re.subn(r'^__version__ = ".*"$', f'__version__ = "{version}"', init.read_text(), flags=re.M)
    if n != 1:
        raise RuntimeError(f"{init}: no __version__ line to set")
    init.write_text(text)
    for rel, (old, new) in (patches or {}).items():
        target = src / rel
        text = target.read_text(encoding="utf-8")
        if old not in text:
            raise RuntimeError(f"patch for {rel} does not apply: {old!r} not found")
        target.write_text(text.replace(old, new), encoding="utf-8")
    _pyinstaller(embed, site, src / "configs" / "pyinstaller" / SPEC.name, home / "dist", home / "work")
    stamp.write_text(key)
    return exe


if __name__ == "__main__":
    import time

    t0 = time.monotonic()
    exe = build()
    print(f"{exe} ({exe.stat().st_size / 1e6:.1f} MB, {time.monotonic() - t0:.0f} s)")
