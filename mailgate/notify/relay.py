"""The outgoing SMTP client: smtplib, run off the event loop; replies mapped to temporary or permanent (tier 2).

smtplib does not verify certificates unless given a context, so STARTTLS always gets
`ssl.create_default_context()`. smtplib refuses CR/LF in addresses and dot-stuffs the data.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass, field

from mailgate.errors import PermanentFailure, TemporaryFailure


@dataclass(frozen=True)
class RelaySettings:
    host: str
    port: int
    starttls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout_seconds: float = 60.0
    local_hostname: str | None = None


def _failure(code: int, text: str) -> TemporaryFailure | PermanentFailure:
    reply = f"{code} {text}".strip()
    return PermanentFailure(reply) if 500 <= code < 600 else TemporaryFailure(reply)


def _decode(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


class SmtpRelay:
    def __init__(self, settings: RelaySettings) -> None:
        self.settings = settings

    def send(self, envelope_from: str, recipient: str, data: bytes) -> None:
        """Hand one mail to the relay; raises TemporaryFailure (retry) or PermanentFailure (give up)."""
        settings = self.settings
        try:
            with smtplib.SMTP(
                settings.host, settings.port, timeout=settings.timeout_seconds, local_hostname=settings.local_hostname
            ) as client:
                client.ehlo()
                if settings.starttls:
                    client.starttls(context=ssl.create_default_context())
                    client.ehlo()
                if settings.username:
                    client.login(settings.username, settings.password or "")
                client.sendmail(envelope_from, [recipient], data)
        except smtplib.SMTPRecipientsRefused as error:
            code, text = next(iter(error.recipients.values()))
            raise _failure(code, _decode(text)) from None
        except (
            smtplib.SMTPSenderRefused,
            smtplib.SMTPDataError,
            smtplib.SMTPConnectError,
            smtplib.SMTPHeloError,
            smtplib.SMTPAuthenticationError,
        ) as error:
            raise _failure(error.smtp_code, _decode(error.smtp_error)) from None
        except (smtplib.SMTPException, OSError) as error:
            # Connection refused, timeouts, a dropped connection: the relay may be back later.
            raise TemporaryFailure(f"relay {settings.host}:{settings.port} unreachable: {error}") from None
