"""The Windows tier's session fixtures, shared by tests/test_windows_agent.py and tests/test_windows_upgrade.py
(a plugin of tests/conftest.py, so each is made once per session whichever modules run).

``windows``: the embeddable Windows CPythons with the agent's wheels and the private Wine prefix, with one
persistent wineserver for the session. ``exe``: dist/pointwatch-agent.exe built under Wine (cached).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from tests.conftest import require


@pytest.fixture(scope="session")
def windows():
    from tests.windows import prepare as prep

    try:
        prep.wine_binary()
    except FileNotFoundError as exc:
        require(False, f"{exc}: apt-get install wine64")
    t0 = time.monotonic()
    embeds = prep.prepare()
    # One wineserver for the whole session (-p: persistent), so no agent process pays for its start.
    wineserver = shutil.which("wineserver") or "/usr/lib/wine/wineserver"
    env = {**os.environ, **prep.WINE_ENV}
    quiet = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    subprocess.run([wineserver, "-p"], env=env, check=False, timeout=60, **quiet)
    # Wine's own background processes (services.exe, winedevice.exe, …) start with the first Windows
    # program and inherit its std handles: started here, on /dev/null, they never hold a test's pipes open.
    subprocess.run([prep.wine_binary(), "wineboot"], env=env, check=False, timeout=300, **quiet)
    print(f"windows tier prepared in {time.monotonic() - t0:.1f} s")
    yield embeds
    subprocess.run([wineserver, "-k"], env=env, check=False, timeout=60, **quiet)


@pytest.fixture(scope="session")
def exe(windows):
    """dist/pointwatch-agent.exe from the spec, built by PyInstaller under Wine (cached by its inputs)."""
    from tests.windows.exe import build

    return build()
