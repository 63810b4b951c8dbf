"""E-mail through an SMTP relay (the private network's own mail server is the "relay URL" here)."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from collector.alerts.configbase import AlertConfigError
from collector.alerts.notifybase import Notifier, NotifyError, error_class


class Smtp(Notifier):
    type = "smtp"
    required = ("host", "from", "to")
    optional = ("port", "starttls", "ssl", "username", "password", "verify_tls", "ca_bundle")

    def validate(self) -> None:
        super().validate()
        to = self.opts["to"]
        if not isinstance(to, (list, str)) or not to:
            raise AlertConfigError(f"alerts.notifiers[{self.name}].to: one address or a list")

    def message(self, payload: dict) -> EmailMessage:
        msg = EmailMessage()
        to = self.opts["to"]
        msg["Subject"] = payload["subject"]
        msg["From"] = self.opts["from"]
        msg["To"] = ", ".join(to) if isinstance(to, list) else to
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = make_msgid(domain="pointwatch")
        msg["X-Pointwatch-Alert"] = f"{payload['fingerprint']} {payload['event']}"
        msg.set_content(payload["text"] + "\n\n— pointwatch 医保服务点运行监测\n", charset="utf-8")
        return msg

    def send(self, payload: dict) -> None:
        host, use_ssl = self.opts["host"], bool(self.opts.get("ssl"))
        port = int(self.opts.get("port") or (465 if use_ssl else 25))
        context = ssl.create_default_context(cafile=self.opts.get("ca_bundle") or None)  # a private CA
        if self.opts.get("verify_tls") is False:
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        try:
            cls = smtplib.SMTP_SSL if use_ssl else smtplib.SMTP
            kwargs = {"context": context} if use_ssl else {}
            with cls(host, port, timeout=self.cfg.timeout_s, **kwargs) as smtp:
                if self.opts.get("starttls") and not use_ssl:
                    smtp.starttls(context=context)
                if self.opts.get("username"):
                    smtp.login(str(self.opts["username"]), str(self.opts.get("password", "")))
                refused = smtp.send_message(self.message(payload))
        except smtplib.SMTPResponseException as exc:
            # 5xx is a permanent refusal (bad address, relay denied); 4xx is "try later".
            raise NotifyError(f"SMTP {exc.smtp_code}", retryable=exc.smtp_code < 500,
                              reason="rejected") from None
        except (smtplib.SMTPException, OSError) as exc:
            reason = "timeout" if isinstance(exc, TimeoutError) else "connection"
            raise NotifyError(f"SMTP failed ({error_class(exc)})", reason=reason) from None
        if refused:
            raise NotifyError(f"SMTP: {len(refused)} recipient(s) refused", retryable=False, reason="rejected")
