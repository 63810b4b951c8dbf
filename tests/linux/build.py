"""Build dist/linux-<arch>/pointwatch-agent, the self-contained Linux agent for Kylin/UOS PCs whose own
Python is older than 3.10, from configs/pyinstaller/pointwatch-agent-linux.spec.

    python tests/linux/build.py        (or `make linux-agent`; tests/test_linux_build.py calls build())

PyInstaller comes from PyPI into a build venv under build/linux/venv (never a runtime dependency of the
agent), with the agent's own runtime dependencies as pyproject.toml declares them. The venv is remade only when that
list changes, the binary only when the agent's sources, the spec or the catalogues change (a stamp beside
each); a cold build takes a minute or two, a warm one nothing. :func:`glibc_floor` reads the GLIBC_ symbol
versions of every ELF file in the binary (the bootloader and the libraries it unpacks), which is the oldest
glibc the binary can run on.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "build" / "linux"
VENV = BUILD / "venv"
SPEC = REPO / "configs" / "pyinstaller" / "pointwatch-agent-linux.spec"
ARCH = platform.machine()
DIST = REPO / "dist" / f"linux-{ARCH}"
BINARY = DIST / "pointwatch-agent"
PYINSTALLER = "pyinstaller>=6.10"


def _requirements() -> list[str]:
    """PyInstaller and the agent's runtime dependencies, as the installed project declares them."""
    from importlib.metadata import requires

    return [PYINSTALLER, *sorted(r for r in requires("pointwatch") or [] if "extra ==" not in r)]


def _run(cmd: list[str], timeout: float = 900) -> None:
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd[:3])} … failed ({proc.returncode}):\n{proc.stderr[-4000:]}")


def venv() -> Path:
    """build/linux/venv with PyInstaller and the agent's dependencies (remade when the list changes)."""
    python = VENV / "bin" / "python"
    key = json.dumps({"requirements": _requirements(), "python": sys.version})
    stamp = VENV / ".stamp"
    if not (python.exists() and stamp.exists() and stamp.read_text() == key):
        shutil.rmtree(VENV, ignore_errors=True)
        # The interpreter that runs this script (the project's .venv) is based on the one the binary embeds.
        base = getattr(sys, "_base_executable", sys.executable)
        _run([base, "-m", "venv", str(VENV)])
        _run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", *_requirements()])
        stamp.write_text(key)
    return python


def _inputs_digest() -> str:
    digest = hashlib.sha256()
    files = sorted(REPO.glob("agent/**/*.py")) + [SPEC] + sorted((REPO / "configs").glob("*.yaml"))
    for f in files:
        digest.update(str(f.relative_to(REPO)).encode())
        digest.update(f.read_bytes())
    digest.update((VENV / ".stamp").read_bytes())
    return digest.hexdigest()


def build() -> Path:
    python = venv()
    stamp = DIST / ".pointwatch-agent.stamp"
    key = _inputs_digest()
    if BINARY.exists() and stamp.exists() and stamp.read_text() == key:
        return BINARY
    DIST.mkdir(parents=True, exist_ok=True)
    _run([str(python), "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN", "--distpath", str(DIST),
          "--workpath", str(BUILD / "work"), str(SPEC)])
    if not BINARY.exists():
        raise RuntimeError(f"PyInstaller finished but {BINARY} is missing")
    stamp.write_text(key)
    return BINARY


def build_variant(name: str, version: str, patches: dict[str, tuple[str, str]] | None = None) -> Path:
    """Another release of the agent for the upgrade tests: the same build from a copy of the sources whose
    ``agent.__version__`` is ``version``, with each ``{file: (old, new)}`` text replacement applied (every
    ``old`` must occur, so a patch that no longer fits the sources fails loudly instead of building an
    unpatched binary). Kept under build/linux/variants/<name>, rebuilt when its inputs change."""
    python = venv()
    home = BUILD / "variants" / name
    binary = home / "dist" / "pointwatch-agent"
    stamp = home / ".stamp"
    key = json.dumps({"inputs": _inputs_digest(), "version": version, "patches": patches or {}}, sort_keys=True)
    if binary.exists() and stamp.exists() and stamp.read_text() == key:
        return binary
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
    _run([str(python), "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN", "--distpath", str(home / "dist"),
          "--workpath", str(home / "work"), str(src / "configs" / "pyinstaller" / SPEC.name)])
    if not binary.exists():
        raise RuntimeError(f"PyInstaller finished but {binary} is missing")
    stamp.write_text(key)
    return binary


# -- what the binary needs from the PC --------------------------------------------------------------------

_GLIBC = re.compile(r"\bGLIBC_(\d+)\.(\d+)(?:\.(\d+))?\b")


def elf_glibc_versions(path: Path) -> set[tuple[int, ...]]:
    """The GLIBC_x.y versions an ELF file's dynamic symbols ask for (``objdump -T``)."""
    out = subprocess.run(["objdump", "-T", str(path)], capture_output=True, text=True, check=True).stdout
    return {tuple(int(p) for p in m.groups() if p is not None) for m in _GLIBC.finditer(out)}


def bundled_elfs(binary: Path, into: Path) -> list[Path]:
    """The bootloader itself plus every shared library inside the one-file archive, written into ``into``."""
    code = (
        "import sys, pathlib\n"
        "from PyInstaller.archive.readers import CArchiveReader\n"
        "arc = CArchiveReader(sys.argv[1]); out = pathlib.Path(sys.argv[2])\n"
        "for name in arc.toc:\n"
        "    data = arc.extract(name)\n"
        "    if data[:4] == b'\\x7fELF':\n"
        "        (out / name.replace('/', '__')).write_bytes(data)\n")
    _run([str(VENV / "bin" / "python"), "-c", code, str(binary), str(into)], timeout=120)
    return [binary, *sorted(into.iterdir())]


def glibc_floor(binary: Path) -> tuple[tuple[int, ...], dict[str, tuple[int, ...]]]:
    """(the newest GLIBC_ version any part needs, {part: its newest}): the oldest glibc it can run on."""
    with tempfile.TemporaryDirectory() as tmp:
        parts = {p.name: max(elf_glibc_versions(p), default=(0,)) for p in bundled_elfs(binary, Path(tmp))}
    return max(parts.values()), parts


def version_text(v: tuple[int, ...]) -> str:
    return ".".join(map(str, v))


if __name__ == "__main__":
    built = build()
    floor, parts = glibc_floor(built)
    print(f"{built} ({built.stat().st_size / 1e6:.1f} MB), needs glibc >= {version_text(floor)}")
    for name, v in sorted(parts.items(), key=lambda kv: kv[1], reverse=True)[:8]:
        print(f"  {version_text(v):>6}  {name}")
