"""The first-run page: a collector with no account says how to create the first admin, in Chinese; once any
enabled account exists /login is the login form again. (In a browser: tests/test_web_console.py.)"""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import update

from collector.accounts import users
from collector.app import create_app
from collector.settings import Settings
from collector.store import models as m


def test_fresh_collector_shows_the_command_then_the_form(store, tmp_path):
    data = tmp_path / "县 数据"
    client = TestClient(create_app(Settings(data_dir=data), store=store))
    page = client.get("/login")
    assert page.status_code == 200 and "首次使用：创建第一个管理员" in page.text
    assert ("pointwatch-collector users create --username admin --role admin --region / --person admin "
            f"--data-dir &#39;{data.resolve()}&#39;") in page.text  # shell-quoted: the path has a space
    assert 'name="password"' not in page.text
    assert client.get("/", follow_redirects=True).url.path == "/login"

    users.create_user(store, "admin", "village-clinic-2026", "admin", "/")
    page = client.get("/login")
    assert 'name="password"' in page.text and "创建第一个管理员" not in page.text

    with store.write_session() as s:  # every account disabled: nobody can log in, so the first-run page again
        s.execute(update(m.User).values(disabled=True))
    assert "创建第一个管理员" in client.get("/login").text


def test_on_postgresql_the_page_names_the_environment_not_the_url(store, tmp_path):
    settings = Settings(data_dir=tmp_path, database_url="postgresql://pw:secret@10.10.1.7/pointwatch")
    text = TestClient(create_app(settings, store=store)).get("/login").text
    assert "POINTWATCH_DATABASE_URL" in text and "secret" not in text
