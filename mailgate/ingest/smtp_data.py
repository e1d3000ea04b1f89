"""The DATA of an SMTP transaction: the bytes up to <CRLF>.<CRLF>, unstuffed (RFC 5321 4.5.2).

aiosmtpd reads DATA a line at a time: an await, a log call and list work for every line, most of
the acceptance process's CPU. This reads it in runs that end at each "." line end (or every
kilobyte of text without one) and never past the terminator, so commands a client pipelines
after it stay in the reader. Only CRLF ends a line, as in aiosmtpd, so a bare LF before "." does
not end the data (SMTP smuggling). The answers are aiosmtpd's: 552 once the data exceeds the size
limit (it is then read to its end and dropped), 500 when a line, CRLF included, is longer than
the line limit (RFC 5321 4.5.3.1.6); where a message has both faults, 552 is the one given.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

_DOT_LINE_END = b".\r\n"

TOO_MUCH = "552 Error: Too much mail data"
TOO_LONG = "500 Line too long (see RFC5321 4.5.3.1.6)"


@dataclass(frozen=True)
class MailData:
    content: bytes  # unstuffed; empty when refused
    refusal: str | None = None  # the reply when the data is refused


async def read_mail_data(reader: asyncio.StreamReader, *, size_limit: int | None, line_limit: int) -> MailData:
    """Read the data after a 354 reply; asyncio.IncompleteReadError when the client goes away."""
    received = bytearray()
    size = 0
    last_two = b"\r\n"  # the data begins at the start of a line
    while True:
        try:
            run = await reader.readuntil(_DOT_LINE_END)
            ends_in_dot_line = True
        except asyncio.LimitOverrunError as overrun:
            run = await reader.read(overrun.consumed)
            ends_in_dot_line = False
        if ends_in_dot_line and (last_two + run)[-5:-3] == b"\r\n":  # "." alone on its line: the end
            run = run[:-3]
            size += len(run)
            if size_limit is None or size <= size_limit:
                received += run
            break
        size += len(run)
        if size_limit is None or size <= size_limit:
            received += run
        else:
            received.clear()  # over the limit: read on to the end, keep nothing
        last_two = (last_two + run)[-2:]
    if size_limit is not None and size > size_limit:
        return MailData(b"", TOO_MUCH)
    if max(map(len, received.split(b"\r\n"))) + 2 > line_limit:
        return MailData(b"", TOO_LONG)
    return MailData(unstuff(bytes(received)))


def unstuff(data: bytes) -> bytes:
    """Remove the leading "." of every line that starts with one (the client doubled it)."""
    if not data.startswith(b".") and b"\r\n." not in data:
        return data
    return (b"\r\n" + data).replace(b"\r\n.", b"\r\n")[2:]
