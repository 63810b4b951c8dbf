"""Who may reach the state directory, and whether a release file could have been written by someone else.

The state directory holds the token (whoever reads it can send reports as this point) and ``releases/`` (the
programs the agent starts as SYSTEM or root). Two rules follow:

- :func:`protect` makes the directory the agent's alone. Windows: a protected DACL, SYSTEM and Administrators
  only, set on the directory and re-applied to everything in it (agent/winacl.py); applied at ``enroll``,
  ``service install`` and every start, so a directory an older version made is fixed. Linux: the directory is
  created 0700 and the secrets 0600 (agent/enrol.py), which is all there is to set.
- :func:`unsafe_to_start` is asked right before a release file is started (the ``--version`` check and the
  trial hand-over in agent/upgrade/manager.py, the exec of the active release or a rollback in
  agent/upgrade/launch.py): the file and each folder from it up to the state directory may be writable by no
  one but SYSTEM/Administrators (Windows) or root/the agent's user (Linux: nor by group or other).

Both fail closed: an ACL that cannot be set or read is a reason to start nothing from the directory, and is
reported (log key ``state_dir_unprotected``; the ``agent.upgrade`` result), never passed over.
"""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger("pointwatch.statedir")

# What protect() found per state directory in this process (None: protected). The walk is done once per
# start; a file planted later is still refused by unsafe_to_start, which reads the ACLs afresh.
_protected: dict[str, str | None] = {}


def _windows() -> bool:
    return sys.platform == "win32"


def protect(state_dir) -> str | None:
    """Make ``state_dir`` (when it exists) the agent's alone; the problem (English) when that failed."""
    key = os.path.realpath(state_dir)
    if key in _protected and _protected[key] is None:
        return None
    if not os.path.isdir(key):
        return None  # nothing to protect yet: whoever creates it calls again
    try:
        _drop_planted(key)  # before the ACL is fixed: afterwards a planted file looks the agent's own
        # Linux: the secrets are 0600 whatever the directory's mode (a tmpfs mount is 1777), and a directory
        # others may write is refused where it matters, by unsafe_to_start.
        problem = _protect_windows(key) if _windows() else None
    except OSError as exc:
        problem = str(exc)
    _protected[key] = problem
    if problem:
        log.error("state_dir_unprotected dir=%s error=%s", state_dir, problem)
    return problem


# What the launch decision believes (upgrade.json names the binary to start and its SHA-256) and what it
# starts (releases/). Only these are removed when someone else could have written them: the rest (the
# outbox above all) is kept, and the token and keys are the enrolment's to replace.
LAUNCH_INPUTS = ("upgrade.json", "releases")


def _drop_planted(root: str) -> None:
    """Remove ``upgrade.json`` and ``releases/`` when anyone but SYSTEM/Administrators (root/the agent) could
    have written them or anything in them. A directory an older version made (Windows: ProgramData's ACL,
    under which every local user creates files) may hold an upgrade.json naming a program of a user's, with
    its SHA-256, in a releases folder of theirs; protect_tree then gives both the state directory's DACL and
    Administrators as owner, and from there on unsafe_to_start would see them as the agent's own and the
    launch decision would start that program as SYSTEM. Losing them costs a download and the upgrade
    history: the installed binary runs. A tree with a link in it is left alone (never followed here; the
    links are refused by protect_tree, and nothing under them is started)."""
    if _windows():
        from agent import winacl

        trusted = winacl.trusted_sids()

        def suspect(path: str) -> str | None:
            return winacl.untrusted(path, True, trusted)
    else:  # the owner only: a file the agent wrote under a umask of 002 is group-writable, and is the agent's
        def suspect(path: str) -> str | None:
            owner = os.lstat(path).st_uid
            return f"{path} is owned by uid {owner}" if owner not in (0, os.geteuid()) else None
    for name in LAUNCH_INPUTS:
        top = os.path.join(root, name)
        if not os.path.lexists(top):
            continue
        found, links = _suspects(top, suspect)
        if not found or links:
            continue
        log.error("state_dir_planted_removed path=%s why=%s", top, found)
        if os.path.isdir(top):
            import shutil

            shutil.rmtree(top)
        else:
            os.unlink(top)


def _suspects(top: str, suspect) -> tuple[str | None, bool]:
    """(the first reason someone else could have written ``top`` or what is under it, whether it holds a link)."""
    paths = [top]
    if os.path.isdir(top) and not _is_link(top):
        for folder, dirs, files in os.walk(top):
            for name in [*dirs, *files]:
                path = os.path.join(folder, name)
                paths.append(path)
                if _is_link(path):
                    return None, True
    elif _is_link(top):
        return None, True
    return next((p for p in map(suspect, paths) if p), None), False


def _is_link(path: str) -> bool:
    if _windows():
        from agent import winacl

        return winacl._is_link(path)
    return os.path.islink(path)


def _protect_windows(path: str) -> str | None:
    from agent import winacl

    links = winacl.protect_tree(path)
    if links:
        return f"links (reparse points) in the state directory, not followed: {', '.join(links[:5])}"
    # Read back: what was set must be what is there (anything else found is reported, not assumed away).
    return winacl.untrusted(path, writers_only=False)


def protect_new_file(path) -> None:
    """Windows: give a secret just created (before anything is written to it) the state directory's DACL
    itself, rather than trusting inheritance from a directory someone else may have made. Raises OSError."""
    if _windows():
        from agent import winacl

        winacl.protect_one(path)


def _posix_problem(path: str) -> str | None:
    st = os.stat(path)
    if st.st_uid not in (0, os.geteuid()):
        return f"{path} is owned by uid {st.st_uid} (neither root nor the agent's uid {os.geteuid()})"
    if st.st_mode & 0o022:
        return f"{path} is writable by its group or others (mode {st.st_mode & 0o7777:04o})"
    return None


def unsafe_to_start(path, state_dir) -> str | None:
    """Why ``path`` must not be started (English, for the failure's detail and the log), or None."""
    root = os.path.realpath(state_dir)
    real = os.path.realpath(path)
    chain = [real]
    if _inside(root, real):
        parent = os.path.dirname(real)
        while parent != root and parent != os.path.dirname(parent):
            chain.append(parent)
            parent = os.path.dirname(parent)
        chain.append(root)
    else:  # a rollback to the base binary: it and its folder
        chain.append(os.path.dirname(real))
    try:
        if _protected.get(root):  # protect() failed in this process: nothing there is trusted
            problem: str | None = f"the state directory {state_dir} is not protected: {_protected[root]}"
        elif _windows():
            from agent import winacl

            trusted = winacl.trusted_sids()
            problem = next((p for p in (winacl.untrusted(c, True, trusted) for c in chain) if p), None)
        else:
            problem = next((p for p in map(_posix_problem, chain) if p), None) or _open_ancestor(chain[-1])
    except OSError as exc:
        problem = f"the permissions of {path} could not be read: {exc}"
    if problem:
        log.error("release_start_refused path=%s why=%s", path, problem)
    return problem


def _open_ancestor(top: str) -> str | None:
    """Linux: a folder above ``top`` (the state directory, or the base binary's folder) that someone else may
    write: they could rename ``top`` away and put a folder of theirs in its place between this check and the
    exec (the hand-over waits up to STOP_WAIT_S for the checks first), and the agent would exec their file as
    root. A root-owned sticky folder (/tmp) lets no one rename what is not theirs. (Windows: ProgramData
    lets Users create folders, but not rename the state directory, whose own DACL grants them nothing.)"""
    parent = os.path.dirname(top)
    while parent != top:
        st = os.stat(parent)
        sticky_root = st.st_uid == 0 and st.st_mode & 0o1000
        if not sticky_root:
            problem = _posix_problem(parent)
            if problem:
                return f"{problem}: whoever may write it could swap {top} for a folder of theirs"
        top, parent = parent, os.path.dirname(parent)
    return None


def _inside(root: str, real: str) -> bool:
    try:
        return os.path.commonpath([root, real]) == root and real != root
    except ValueError:  # another drive
        return False
