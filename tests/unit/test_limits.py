"""prescan: linear pre-checks that refuse hostile mail before any MIME parser runs."""

from __future__ import annotations

import email
import random
import time
from collections.abc import Callable
from email.message import Message
from email.policy import compat32

import pytest

from mailgate.errors import MessageRejected
from mailgate.mail.limits import ParseLimits, _Delimiters, _MimeScan, header_block_end, overlong_line, prescan

HEAD = b"From: attacker@evil.example\r\nTo: support@example.com\r\nSubject: hostile\r\nMIME-Version: 1.0\r\n"


def deep_nesting(depth: int) -> bytes:
    raw = HEAD + b'Content-Type: multipart/mixed; boundary="b0"\r\n\r\n'
    for level in range(1, depth):
        raw += b'--b%d\r\nContent-Type: multipart/mixed; boundary="b%d"\r\n\r\n' % (level - 1, level)
    return raw + b"--b%d--\r\n" % (depth - 1)


def sibling_parts(count: int) -> bytes:
    part = b"--sep\r\nContent-Type: text/plain\r\n\r\nx\r\n"
    return HEAD + b"Content-Type: multipart/mixed; boundary=sep\r\n\r\n" + part * count + b"--sep--\r\n"


def many_addresses(count: int) -> bytes:
    addresses = b",".join(b"u%d@ex.net" % i for i in range(count))
    return b"From: a@evil.example\r\nTo: " + addresses + b"\r\nSubject: many\r\n\r\nhi\r\n"


def huge_header(size: int) -> bytes:
    folded = b"\r\n ".join([b"x" * 76] * (size // 79))
    return HEAD + b"X-Padding: " + folded + b"\r\n\r\nbody\r\n"


def big_body(size: int) -> bytes:
    line = b"QUJD" * 19 + b"\r\n"
    attachment = line * (size // len(line))
    return (
        HEAD
        + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n'
        + b"--b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + attachment
        + b"--b--\r\n"
    )


HOSTILE: dict[str, tuple[Callable[[], bytes], str]] = {
    "nested 10,000 deep": (lambda: deep_nesting(10_000), "MIME nesting deeper than 50 levels"),
    "100,000 sibling parts": (lambda: sibling_parts(100_000), "more than 1000 MIME parts"),
    "50,000 addresses in To": (lambda: many_addresses(50_000), "50001 addresses exceed the limit of 1000"),
    "1 MB header": (lambda: huge_header(1_000_000), "exceeds the limit of 262144"),
}


def rejection(raw: bytes, limits: ParseLimits | None = None) -> str:
    with pytest.raises(MessageRejected) as error:
        prescan(raw, limits or ParseLimits())
    return str(error.value)


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_shapes_are_rejected_within_a_second(name: str) -> None:
    """Each hostile shape is refused with a precise reason in well under a second."""
    build, reason = HOSTILE[name]
    raw = build()
    started = time.perf_counter()
    message = rejection(raw)
    assert time.perf_counter() - started < 1.0
    assert reason in message


def test_a_30_mb_attachment_passes_within_a_second() -> None:
    """A large but ordinary message is scanned in linear time and accepted."""
    raw = big_body(30 * 1024 * 1024)
    started = time.perf_counter()
    prescan(raw, ParseLimits())
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    "body",
    [b"a\r\n" * (10 * 1024 * 1024), b"--b\r\n" * (6 * 1024 * 1024), (b"x" * 600_000 + b"\n") * 50],
    ids=["short lines", "repeated delimiters", "long LF lines"],
)
def test_30_mb_of_awkward_lines_is_scanned_within_a_second(body: bytes) -> None:
    """Many tiny lines, a flood of delimiter lines or long lines cost no per-line Python work."""
    raw = HEAD + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n\r\n' + body + b"--b--\r\n"
    started = time.perf_counter()
    prescan(raw, ParseLimits(max_lines=10**9))
    assert time.perf_counter() - started < 1.0


def test_too_many_lines_are_rejected() -> None:
    """More lines than max_lines (CR, LF and CRLF each end one) is refused before parsing."""
    raw = HEAD + b"\r\n" + b"a\r\n" * 500 + b"b\n" * 300 + b"c\r" * 300
    assert rejection(raw, ParseLimits(max_lines=1000)) == "1105 lines exceed the limit of 1000"
    assert "lines exceed" in rejection(HEAD + b"\r\n" + b"a\r\n" * 1_000_001)


def test_overlong_line_finds_lines_over_the_limit_exactly() -> None:
    """A line is too long only beyond the limit, whichever of CR, LF or CRLF ends it."""
    rng = random.Random(5)
    for _ in range(3000):
        limit = rng.randint(1, 30)
        raw = b"".join(rng.choice([b"a", b"\n", b"\r", b"\r\n", b"a" * 10]) for _ in range(rng.randint(0, 60)))
        lengths = set(map(len, raw.replace(b"\r", b"\n").split(b"\n")))
        found = overlong_line(raw, limit)
        assert (found is None) == (max(lengths) <= limit)
        assert found is None or (found in lengths and found > limit)


def test_header_block_reason_names_its_size() -> None:
    """The header-size reason gives the block size and the limit in bytes."""
    raw = b"Subject: " + b"a" * 1_048_580 + b"\r\n\r\nbody"
    assert rejection(raw) == "header block of 1048591 bytes exceeds the limit of 262144"


def test_too_many_header_fields_are_rejected() -> None:
    """More header fields than max_header_fields is refused."""
    raw = b"".join(b"X-%d: y\r\n" % i for i in range(1001)) + b"\r\nbody"
    assert rejection(raw) == "1001 header fields exceed the limit of 1000"


def test_address_count_ignores_commas_in_quoted_names() -> None:
    """Commas inside quoted display names do not count as extra addresses."""
    to = b", ".join(b'"Doe, John %d" <j%d@ex.net>' % (i, i) for i in range(600))
    prescan(b"From: a@b.example\r\nTo: " + to + b"\r\n\r\nhi", ParseLimits())


def test_addresses_are_counted_across_address_headers() -> None:
    """From, To, Cc, Bcc, Reply-To and Sender share one address budget."""
    half = b",".join(b"u%d@ex.net" % i for i in range(300))
    raw = b"From: a@b.example\r\nTo: " + half + b"\r\nCc: " + half + b"\r\nBcc: " + half + b"\r\n\r\nhi"
    assert rejection(raw, ParseLimits(max_addresses=800)) == "901 addresses exceed the limit of 800"


def test_a_line_over_the_limit_is_rejected() -> None:
    """A body line longer than max_line_bytes is refused."""
    raw = HEAD + b"\r\n" + b"a" * (1024 * 1024 + 1) + b"\r\n"
    assert rejection(raw) == "line of 1048577 bytes exceeds the limit of 1048576"


def test_depth_at_the_limit_passes_and_one_more_is_rejected() -> None:
    """Fifty nested multiparts are fine; fifty-one are not."""
    prescan(deep_nesting(50), ParseLimits())
    assert rejection(deep_nesting(51)) == "MIME nesting deeper than 50 levels"


def test_parts_at_the_limit_pass() -> None:
    """A thousand parts are accepted, one more is not."""
    prescan(sibling_parts(1000), ParseLimits())
    assert rejection(sibling_parts(1001)) == "more than 1000 MIME parts"


def test_bare_cr_line_ends_do_not_hide_nesting() -> None:
    """Boundaries on CR-only lines count, because the email package splits lines at CR too."""
    raw = deep_nesting(60).replace(b"\r\n", b"\r")
    assert "nesting" in rejection(raw)


def test_rfc2231_and_quoted_boundaries_are_understood() -> None:
    """boundary*=, boundary*0/*1 continuations and quoted-pair escapes resolve like the stdlib."""
    forms = [
        b"Content-Type: multipart/mixed; boundary*=us-ascii''b%dx",
        b'Content-Type: multipart/mixed; boundary*0="b"; boundary*1="%dx"',
        b'Content-Type: multipart/mixed; BOUNDARY = "b%dx" ; x="a;b"',
        b'Content-Type: multipart/mixed;\r\n\tboundary="<b%dx>"',
    ]
    raw = HEAD + forms[0] % 0 + b"\r\n\r\n"
    for level in range(1, 60):
        raw += b"--b%dx\r\n" % (level - 1) + forms[level % len(forms)] % level + b"\r\n\r\n"
    assert "nesting" in rejection(raw)


def test_an_outer_delimiter_closes_inner_parts() -> None:
    """Siblings after an implicitly closed inner multipart are not counted as deeper (RFC 2046 5.1.2)."""
    inner = b'--o\r\nContent-Type: multipart/mixed; boundary="i"\r\n\r\n--i\r\nContent-Type: text/plain\r\n\r\nx\r\n'
    raw = HEAD + b'Content-Type: multipart/mixed; boundary="o"\r\n\r\n' + inner * 60 + b"--o--\r\n"
    prescan(raw, ParseLimits(max_mime_depth=2))


def test_nested_message_rfc822_counts_as_depth() -> None:
    """Each embedded message/rfc822 header block is one more level."""
    raw = HEAD + b"Content-Type: message/rfc822\r\n\r\n" * 60 + b"Subject: inner\r\n\r\nx\r\n"
    assert "nesting" in rejection(raw)


def test_digest_parts_default_to_embedded_messages() -> None:
    """Parts of multipart/digest without a Content-Type are message/rfc822, one level deeper."""
    raw = HEAD + b'Content-Type: multipart/digest; boundary="d"\r\n\r\n--d\r\n\r\nSubject: inner\r\n\r\nx\r\n--d--\r\n'
    scan = _MimeScan(raw, ParseLimits())
    scan.scan_message(0, len(raw), reparse_epilogue=True)
    assert (scan.parts, scan.deepest) == (2, 2)


def test_structure_inside_delivery_status_blocks_counts() -> None:
    """A delivery-status block without blank lines can hold a whole MIME tree; its parts count."""
    block = b"Content-Type: multipart/mixed; boundary=z\r\nnot a header\r\n"
    parts = b"--z\r\nContent-Type: text/plain\r\nx\r\n" * 5000
    raw = HEAD + b"Content-Type: message/delivery-status\r\n\r\nReporting-MTA: x\r\n\r\n" + block + parts
    assert rejection(raw) == "more than 1000 MIME parts"


def test_costly_parameter_headers_are_rejected_quickly() -> None:
    """A Content-Type with tens of thousands of semicolons (quadratic in the stdlib) is refused."""
    raw = HEAD + b'Content-Type: text/plain; name="' + b";" * 64_000 + b'"\r\n\r\nhello\r\n'
    started = time.perf_counter()
    assert "MIME parameters too costly" in rejection(raw)
    assert time.perf_counter() - started < 1.0


def test_parts_hidden_in_a_reparsed_epilogue_count() -> None:
    """mail-parser re-parses the epilogue between "--b" and "--b--"; its parts count too."""
    inner = b"Content-Type: multipart/mixed; boundary=z\r\n\r\n" + b"--z\r\n\r\nx\r\n" * 2000 + b"--z--\r\n"
    raw = (
        HEAD
        + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n--b\r\n'
        + inner
        + b"--b--\r\n"
    )
    assert rejection(raw) == "more than 1000 MIME parts"


def test_a_huge_boundary_is_rejected() -> None:
    """Boundaries far beyond RFC 2046's 70 characters are refused."""
    raw = HEAD + b'Content-Type: multipart/mixed; boundary="' + b"b" * 2000 + b'"\r\n\r\n'
    assert "MIME boundary of 2000 bytes" in rejection(raw)


def test_header_block_ends_where_the_stdlib_stops() -> None:
    """The header block ends at the blank line or at the first line that is not a header."""
    assert header_block_end(b"A: 1\r\n folded\r\nB: 2\r\n\r\nbody") == 21
    assert header_block_end(b"A: 1\nnot a header\nB: 2\n\nbody") == 5


def _stdlib_shape(raw: bytes) -> tuple[int, int]:
    root = email.message_from_bytes(raw, policy=compat32)
    count, deepest = 0, 0
    stack: list[tuple[Message, int]] = [(root, 0)]
    while stack:
        part, depth = stack.pop()
        count, deepest = count + 1, max(deepest, depth)
        payload = part.get_payload() if part.is_multipart() else []
        stack.extend((child, depth + 1) for child in payload if isinstance(child, Message))
    return count - 1, deepest


def _random_entity(rng: random.Random, depth: int) -> bytes:
    """A random, often malformed, MIME entity with shared and odd boundaries and line ends."""
    eol = rng.choice([b"\r\n"] * 6 + [b"\n", b"\r"])
    kind = rng.random()
    if depth > 4 or kind < 0.35:
        ctype = rng.choice([b"text/plain", b"message/delivery-status", b"application/pdf"])
        body = rng.choice([b"hi", b"--b0", b"--b1--", b"", b"Reporting-MTA: x" + eol + eol + b"X: y"])
        return b"Content-Type: " + ctype + eol + eol + body
    if kind < 0.5:
        return b"Content-Type: message/rfc822" + eol + eol + _random_entity(rng, depth + 1)
    boundary = rng.choice([b"b", b"a:b", b"x y", b"", b"b--"]) + b"%d" % rng.randint(0, 2)
    header = rng.choice(
        [
            b'Content-Type: multipart/mixed; boundary="%s"' % boundary,
            b"Content-Type: multipart/digest; boundary*=us-ascii''" + boundary.replace(b" ", b"%20"),
            b"Content-Type: multipart/alternative;" + eol + b'\tboundary="<%s>"' % boundary,
        ]
    )
    body = header + eol + rng.choice([eol, b""]) + b"preamble" + eol
    for _ in range(rng.randint(0, 3)):
        body += b"--" + boundary + rng.choice([b"", b" "]) + eol + _random_entity(rng, depth + 1) + eol
    return body + rng.choice([b"--" + boundary + b"--" + eol, b""])


def test_scan_never_undercounts_what_the_email_package_builds() -> None:
    """On random malformed MIME, prescan's part count and depth bound the stdlib's tree."""
    rng = random.Random(20250303)
    unlimited = ParseLimits(max_mime_depth=10**6, max_mime_parts=10**6)
    for _ in range(400):
        raw = b"From: a@b.example\r\n" + _random_entity(rng, 0)
        parts, deepest = _stdlib_shape(raw)
        scan = _MimeScan(raw, unlimited)
        scan.scan_message(0, len(raw), reparse_epilogue=True)
        assert scan.parts >= parts and scan.deepest >= deepest, raw


def test_delimiter_lines_are_found_as_the_boundary_pattern_finds_them() -> None:
    """The comparing search and the compiled pattern agree, line by line, on random text."""
    rng = random.Random(20261126)
    pieces = [b"--", b"b", b"b--", b"bb", b"--b", b" ", b"\t", b"x", b"\r\n", b"\n", b"\r", b"-"]
    for _ in range(3000):
        boundaries = frozenset(rng.sample([b"b", b"bb", b"b--", b"x b"], rng.randint(1, 3)))
        raw = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 40)))
        pos = rng.randint(0, len(raw))
        comparing, compiled = _Delimiters(boundaries), _Delimiters(boundaries)
        comparing.COMPARED_LINES = rng.randint(1, 6)  # also switching to the pattern midway
        compiled._compiled()
        for _ in range(3):  # searches go on from the last find, as the scan does
            found = comparing.search(raw, pos, len(raw))
            assert found == compiled.search(raw, pos, len(raw)), (boundaries, raw, pos)
            if found is None:
                break
            pos = found.end


def test_a_flood_of_dash_lines_that_are_no_delimiter_is_searched_in_c() -> None:
    """Past a few compared lines, the rest is searched by one pattern: 30 MB stay under a second."""
    body = b"--not-it\r\n" * (3 * 1024 * 1024)
    raw = HEAD + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n\r\n' + body + b"--b--\r\n"
    started = time.perf_counter()
    prescan(raw, ParseLimits(max_lines=10**9))
    assert time.perf_counter() - started < 1.0
