"""The first run: a collector with no account shows how to create the first admin instead of a login form nobody
can use. Once any enabled account exists the login form is back (its holder can log in; an admin makes the
rest).

The first admin is made on the collector host with the CLI (it prompts for the password, which never crosses
the network); every later account can be made by that admin. The page names the data directory this
collector was started with, so the command works as shown.
"""

from __future__ import annotations

import shlex

from fastapi import Request
from sqlalchemy import select

from collector.store import models as m


def needs_first_admin(store) -> bool:
    """True while no enabled account exists: nobody could use the login form."""
    with store.session() as s:
        found = s.scalar(select(m.User.id).where(m.User.disabled.is_(False)).limit(1))
    return found is None


def create_admin_command(settings) -> str:
    """The exact command for this collector's store (a PostgreSQL URL is never shown: it may hold a password)."""
    data_dir = shlex.quote(str(settings.data_dir.resolve()))
    return f"pointwatch-collector users create --username admin --role admin --region / --person admin --data-dir {data_dir}"


def page(request: Request, templates):
    settings = request.app.state.settings
    return templates.TemplateResponse(request, "first_run.html", {
        "command": create_admin_command(settings), "postgres": bool(settings.database_url)})
