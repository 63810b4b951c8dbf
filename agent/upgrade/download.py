"""Downloading a release over a village's 2G/3G line: resumable, bandwidth-capped, never more than signed.

The bytes go to ``<file>.part``; a later call asks ``Range: bytes=<size of the part>-`` and appends, so an
interrupted download (the window ended, the agent stopped, the line dropped) resumes where it stopped. A
server that ignores the range (200) starts the part afresh. The cap is a token bucket (``max_kbps`` kilobits
per second, one second of burst): :meth:`TokenBucket.take` says how long to wait before a chunk may pass,
so the cap is a computation the tests check, not a timing.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from agent import __version__, transport

log = logging.getLogger("pointwatch.upgrade")

CHUNK = 4096
CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


FREE_MARGIN = 64 * 1024 * 1024  # left free beyond the release: the agent's outbox, logs and state keep writing


class DownloadError(Exception):
    """The download did not finish and may be tried again later (a warn, not a failed release)."""


class NoSpace(DownloadError):
    """Too little disk free for the release: the PC's disk, never the build's fault (retried later)."""


def check_free(folder: Path, needed: int) -> None:
    """NoSpace (in Chinese: the point reads it) when ``folder``'s disk has less than ``needed`` bytes plus
    :data:`FREE_MARGIN` free. A disk whose free space cannot be read is not refused here: the write says."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError as exc:
        log.warning("download_free_space_unknown path=%s error=%s", folder, exc)
        return
    if free < needed + FREE_MARGIN:
        mib = 1024 * 1024
        raise NoSpace(f"本机磁盘空间不足：下载新版本还需约 {-(-needed // mib)} MB，另须保留 {FREE_MARGIN // mib} MB，"
                      f"{folder} 所在磁盘仅剩 {free // mib} MB；请清理磁盘，代理会稍后自动重试")


class TokenBucket:
    """``rate`` bytes per second with ``burst`` bytes of credit; ``take(n, now)`` -> seconds to wait first."""

    def __init__(self, rate: float, burst: float, now: float):
        self.rate, self.burst = float(rate), float(burst)
        self.tokens, self.last = float(burst), now

    def take(self, n: int, now: float) -> float:
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.last) * self.rate)
        self.last = now
        self.tokens -= n
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


def bucket_for(max_kbps: int, now: float) -> TokenBucket:
    rate = max_kbps * 1000 / 8  # kilobits/s -> bytes/s
    return TokenBucket(rate, burst=max(rate, CHUNK), now=now)


@dataclass
class Progress:
    done: int
    size: int

    @property
    def percent(self) -> int:
        return int(self.done * 100 / self.size) if self.size else 0


def download(url: str, token: str | None, part: Path, size: int, max_kbps: int, *, timeout: float, ctx=None,
             wait=None, clock=None, on_progress=None) -> bool:
    """Bring ``part`` to ``size`` bytes from ``url``. True: complete; False: ``wait(seconds)`` said stop
    (returns True when the download must pause: the agent stops, or the window ended). DownloadError when
    the collector did not give the bytes."""
    import time

    clock = clock or time.monotonic
    wait = wait or (lambda s: time.sleep(s) or False)
    part.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    done = part.stat().st_size if part.exists() else 0
    if done > size:  # more than was signed: never a valid start
        part.unlink()
        done = 0
    if done == size:
        return True
    check_free(part.parent, size - done)
    headers = {"User-Agent": f"pointwatch-agent/{__version__}", "Accept": "application/octet-stream"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if done:
        headers["Range"] = f"bytes={done}-"
    req = urllib.request.Request(url, headers=headers, method="GET")
    bucket = bucket_for(max_kbps, clock())
    try:
        with transport.open_url(req, timeout, ctx) as resp:
            if done and resp.status == 206:
                m = CONTENT_RANGE.match(resp.headers.get("Content-Range") or "")
                if not m or int(m.group(1)) != done or m.group(3) not in (str(size), "*"):
                    raise DownloadError(f"collector answered Range bytes={done}- with Content-Range "
                                        f"{resp.headers.get('Content-Range')!r}")
            elif done:  # 200: the whole file again; start the part afresh
                log.info("download_range_ignored status=%s restart=true", resp.status)
                check_free(part.parent, size - part.stat().st_size if part.exists() else size)
                done = 0
            # A captive portal or a misconfigured proxy answers 200 with a page of its own: it must not
            # replace the part already downloaded, nor become the first bytes of a release (which the
            # digest would refuse, and refusing it DIGEST_TRIES times bans a good build).
            length = (resp.headers.get("Content-Length") or "").strip()
            if length.isdigit() and int(length) != size - done:
                raise DownloadError(f"collector answered {resp.status} with {length} bytes, {size - done} expected "
                                    f"(Content-Type {resp.headers.get('Content-Type')!r}); a proxy's page?")
            mode = "ab" if done else "wb"
            with open(part, mode) as out:
                try:
                    while done < size:
                        chunk = resp.read(min(CHUNK, size - done))
                        if not chunk:
                            raise DownloadError(f"collector closed the download at {done} of {size} bytes")
                        delay = bucket.take(len(chunk), clock())
                        out.write(chunk)
                        done += len(chunk)
                        if on_progress:
                            on_progress(Progress(done, size))
                        if wait(delay):  # also asked at no delay: a stop or the window's end pauses at once
                            return False
                finally:
                    out.flush()
                    os.fsync(out.fileno())
            return True
    except urllib.error.HTTPError as exc:
        if (refused := transport.redirect_refused(exc)) is not None:
            raise DownloadError(refused) from None
        detail = exc.read(2000).decode("utf-8", errors="replace")
        if exc.code == 416:  # the part is no prefix the collector knows: start afresh next time
            part.unlink(missing_ok=True)
        raise DownloadError(f"collector answered {exc.code}: {detail}") from None
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
        raise DownloadError(f"download interrupted: {getattr(exc, 'reason', exc)}") from None


def part_for_build(part, sha256: str) -> None:
    """A part resumes only the build it was started for: another build of the version starts it afresh."""
    mark = part.with_name(part.name + ".sha256")
    try:
        same = mark.read_text(encoding="ascii").strip() == sha256
    except OSError:
        same = False
    if not same:
        part.unlink(missing_ok=True)
        part.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        mark.write_text(sha256, encoding="ascii")
