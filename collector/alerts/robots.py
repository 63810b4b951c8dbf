"""Group-chat robots: DingTalk (钉钉), WeCom (企业微信) and Feishu (飞书) custom robots.

Each answers HTTP 200 with its verdict in the body (``errcode`` / ``code``), so that is what is checked.
Payload shapes follow the robots' documented webhook formats (also what louislam/uptime-kuma sends).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from urllib.parse import quote_plus

from collector.alerts.notifybase import Notifier, NotifyError


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """base64(HMAC-SHA256(key=secret, msg=f"{ts}\\n{secret}")), URL-encoded: DingTalk's 加签."""
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return quote_plus(base64.b64encode(digest).decode("ascii"))


def feishu_sign(secret: str, timestamp_s: int) -> str:
    """Feishu's 签名校验: HMAC-SHA256 keyed with f"{ts}\\n{secret}" over an empty message, base64."""
    digest = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


class DingTalk(Notifier):
    type = "dingtalk"
    optional = ("proxy", "headers", "secret", "at_mobiles", "at_all")

    def send(self, payload: dict) -> None:
        url = self.opts["url"]
        if self.opts.get("secret"):
            ts = int(time.time() * 1000)
            url += ("&" if "?" in url else "?") + f"timestamp={ts}&sign={dingtalk_sign(self.opts['secret'], ts)}"
        mobiles = [str(m) for m in self.opts.get("at_mobiles") or []]
        text = payload["markdown"] + ("\n\n" + " ".join(f"@{m}" for m in mobiles) if mobiles else "")
        body = {"msgtype": "markdown", "markdown": {"title": payload["subject"], "text": text},
                "at": {"atMobiles": mobiles, "isAtAll": bool(self.opts.get("at_all"))}}
        status, raw = self.post_json(url, body)
        # 130101: sending too fast (20 a minute per robot): worth another try later.
        self.robot_answer(status, raw, ("errcode",), rate_limited=(130101,))


class WeCom(Notifier):
    """企业微信群机器人: ``https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…``, ``msgtype: markdown``."""

    type = "wecom"
    optional = ("proxy", "headers", "mentioned_mobiles")

    def send(self, payload: dict) -> None:
        severity_colour = {"critical": "warning", "warning": "warning", "info": "comment"}
        colour = "info" if payload["event"] == "resolved" else severity_colour.get(payload["severity"], "warning")
        content = (f"### <font color=\"{colour}\">{payload['subject']}</font>\n"
                   + "\n".join(f"> {x}" for x in payload["lines"]) + f"\n[查看服务点]({payload['link']})")
        mobiles = [str(m) for m in self.opts.get("mentioned_mobiles") or []]
        if mobiles:  # markdown messages mention people with <@userid>; mobiles only work in text messages
            content += "\n" + " ".join(f"<@{m}>" for m in mobiles)
        status, raw = self.post_json(self.opts["url"], {"msgtype": "markdown", "markdown": {"content": content}})
        self.robot_answer(status, raw, ("errcode",), rate_limited=(45009,))


class Feishu(Notifier):
    """飞书自定义机器人: ``msg_type: post`` with ``content.post.zh_cn``; optional 签名校验 secret."""

    type = "feishu"
    optional = ("proxy", "headers", "secret")

    def send(self, payload: dict) -> None:
        rows = [[{"tag": "text", "text": line}] for line in payload["lines"]]
        rows.append([{"tag": "a", "text": "查看服务点", "href": payload["link"]}])
        body: dict = {"msg_type": "post",
                      "content": {"post": {"zh_cn": {"title": payload["subject"], "content": rows}}}}
        if self.opts.get("secret"):
            ts = int(time.time())
            body.update(timestamp=str(ts), sign=feishu_sign(self.opts["secret"], ts))
        status, raw = self.post_json(self.opts["url"], body)
        # New robots answer {"code": 0, "msg": "success"}, old ones {"StatusCode": 0}; 9499 = too many requests.
        self.robot_answer(status, raw, ("code", "StatusCode"), rate_limited=(9499,))


__all__ = ["DingTalk", "WeCom", "Feishu", "NotifyError", "dingtalk_sign", "feishu_sign"]
