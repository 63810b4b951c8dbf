"""The state directory's DACL on Windows (pywin32). Windows-only: imported only by agent/statedir.py, on Windows.

``%ProgramData%\\pointwatch-agent`` would otherwise inherit ProgramData's ACL, under which every local user
(BUILTIN\\Users) reads files and creates files and folders: the token (forged reports) and ``releases\\`` (a
program the SYSTEM service starts) would be theirs. :func:`protect_tree` gives the directory and everything in
it a *protected* DACL (nothing inherited from ProgramData): full control for LocalSystem and
BUILTIN\\Administrators, inherited by what is created inside (OI|CI), and Administrators as the owner (an owner
may always rewrite the DACL). Every object gets the same explicit DACL, so a file someone gave an ACL of its
own before the agent came is fixed too, and nothing depends on inheritance being propagated.

SetFileSecurity (one call per object, owner and DACL together) rather than SetNamedSecurityInfo: it applies
exactly the descriptor given, and a failure to set the owner (a non-elevated console) then changes nothing,
so the agent never locks itself out of a directory it could not make its own.

:func:`untrusted` reads a descriptor back: who, other than SYSTEM, Administrators, TrustedInstaller or this
process's own user (who could write anyway), owns the object or is granted access (any, or only write-like).
"""

from __future__ import annotations

import os
import stat

import ntsecuritycon as con  # pywin32
import pywintypes
import win32api
import win32security as ws

SYSTEM_SID, ADMINS_SID = "S-1-5-18", "S-1-5-32-544"
# NT SERVICE\TrustedInstaller owns Windows' own files (and Program Files' ACL names it): never less trusted
# than SYSTEM, so a base binary under Program Files is not refused for it.
TRUSTED_INSTALLER_SID = "S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464"
# Rights that let a holder change what a file holds or what a folder lists, or take the object over.
WRITE_RIGHTS = (con.FILE_WRITE_DATA | con.FILE_APPEND_DATA | con.FILE_WRITE_EA | con.FILE_DELETE_CHILD
                | con.DELETE | con.WRITE_DAC | con.WRITE_OWNER | con.GENERIC_WRITE | con.GENERIC_ALL)
DENY_TYPES = {1, 6, 10, 12}  # ACCESS_DENIED(_OBJECT)(_CALLBACK)(_OBJECT): they only take rights away
NOT_ACCESS_TYPES = {2, 3, 7, 8, 13, 14, 15, 17, 18, 19}  # audit, alarm, label, attribute, scope, trust: no rights
INHERIT_ONLY = 0x08


class AclError(OSError):
    """An ACL could not be set or read: the caller reports it and starts no release from there."""


def _error(path, action: str, exc: pywintypes.error) -> AclError:
    return AclError(f"{path}: {action} failed: {exc.strerror} (winerror {exc.winerror})")


def own_sid() -> str:
    token = ws.OpenProcessToken(win32api.GetCurrentProcess(), ws.TOKEN_QUERY)
    try:
        return ws.ConvertSidToStringSid(ws.GetTokenInformation(token, ws.TokenUser)[0])
    finally:
        token.Close()


def trusted_sids() -> frozenset[str]:
    return frozenset({SYSTEM_SID, ADMINS_SID, TRUSTED_INSTALLER_SID, own_sid()})


def _descriptor():
    acl = ws.ACL()
    inherit = con.OBJECT_INHERIT_ACE | con.CONTAINER_INHERIT_ACE  # ignored on a file, inherited in a folder
    for sid in (SYSTEM_SID, ADMINS_SID):
        acl.AddAccessAllowedAceEx(ws.ACL_REVISION, inherit, con.FILE_ALL_ACCESS, ws.ConvertStringSidToSid(sid))
    sd = ws.SECURITY_DESCRIPTOR()
    sd.SetSecurityDescriptorOwner(ws.ConvertStringSidToSid(ADMINS_SID), False)
    sd.SetSecurityDescriptorDacl(True, acl, False)
    sd.SetSecurityDescriptorControl(ws.SE_DACL_PROTECTED, ws.SE_DACL_PROTECTED)
    return sd


def protect_one(path) -> None:
    """SYSTEM + Administrators only, protected, owned by Administrators."""
    try:
        ws.SetFileSecurity(str(path), ws.OWNER_SECURITY_INFORMATION | ws.DACL_SECURITY_INFORMATION, _descriptor())
    except pywintypes.error as exc:
        raise _error(path, "SetFileSecurity", exc) from None


def _is_link(path) -> bool:
    return bool(os.lstat(path).st_file_attributes & stat.FILE_ATTRIBUTE_REPARSE_POINT)


def protect_tree(root) -> list[str]:
    """Protect ``root`` and everything under it; returns the links (reparse points) found, which are neither
    followed nor touched: the agent makes none, and following one would let whoever planted it have SYSTEM
    rewrite the ACL of a folder elsewhere (a junction to C:\\Windows)."""
    links: list[str] = []
    protect_one(root)
    for top, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = os.path.join(top, name)
            if _is_link(path):
                links.append(path)
                continue
            protect_one(path)
        dirs[:] = [d for d in dirs if os.path.join(top, d) not in links]
    return links


def untrusted(path, writers_only: bool, trusted: frozenset[str] | None = None) -> str | None:
    """What makes ``path`` reachable by someone untrusted (English, for logs and details), or None."""
    trusted = trusted_sids() if trusted is None else trusted
    try:
        sd = ws.GetFileSecurity(str(path), ws.OWNER_SECURITY_INFORMATION | ws.DACL_SECURITY_INFORMATION)
    except pywintypes.error as exc:
        raise _error(path, "GetFileSecurity", exc) from None
    owner = sd.GetSecurityDescriptorOwner()
    owner_sid = ws.ConvertSidToStringSid(owner) if owner is not None else None
    if owner_sid not in trusted:
        return f"{path} is owned by {owner_sid or 'nobody'}"
    dacl = sd.GetSecurityDescriptorDacl()
    if dacl is None:
        return f"{path} has no DACL (everyone has full access)"
    for i in range(dacl.GetAceCount()):
        ace = dacl.GetAce(i)
        (ace_type, flags), mask, sid = ace[0], ace[1] & 0xFFFFFFFF, ace[-1]
        if ace_type in DENY_TYPES or ace_type in NOT_ACCESS_TYPES or flags & INHERIT_ONLY:
            continue
        who = ws.ConvertSidToStringSid(sid)
        if who in trusted:
            continue
        if mask & WRITE_RIGHTS or not writers_only:
            return f"{path} grants {who} access 0x{mask:08x}"
    return None
