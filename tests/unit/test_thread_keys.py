"""Thread keys: which messages may be of one thread, told from their headers alone."""

from __future__ import annotations

from mailgate.mail.parse import ThreadHeaders, parse_message, thread_headers
from mailgate.mail.tokens import make_message_id, reply_address
from mailgate.thread_order import ThreadKeys, thread_keys
from tests.support.mailfactory import make_mail
from tests.support.workloads import varied_workload

TAG, DOMAIN, SECRET = "Acme Support", "example.com", b"s" * 32
SUPPORT = ("support@example.com",)


def keys(
    message_id: str | None = None,
    in_reply_to: tuple[str, ...] = (),
    references: tuple[str, ...] = (),
    subject: str = "",
    recipients: tuple[str, ...] = SUPPORT,
) -> ThreadKeys | None:
    headers = ThreadHeaders(message_id, in_reply_to, references, subject)
    return thread_keys(headers, recipients, subject_tag=TAG, domain=DOMAIN)


def meet(first: ThreadKeys | None, second: ThreadKeys | None) -> bool:
    assert first is not None and second is not None
    return first.meet(second)


def test_a_reply_meets_its_parent_and_its_siblings() -> None:
    request = keys("request@c.example")
    reply = keys("reply-1@c.example", in_reply_to=("request@c.example",))
    sibling = keys("reply-2@c.example", references=("request@c.example",))
    grandchild = keys("reply-3@c.example", in_reply_to=("reply-1@c.example",))
    assert meet(reply, request) and meet(sibling, reply) and meet(grandchild, reply)
    assert not meet(grandchild, request), "only through the reply between them, which waits for the request"


def test_ticket_numbers_from_the_tag_our_references_and_our_message_ids() -> None:
    our_id = make_message_id(SECRET, ticket=1042, recipient="alice@c.example", nonce="n1", domain=DOMAIN)
    tagged = keys("a@c.example", subject="Re: [Acme Support #1042] Printer")
    pseudo = keys("b@c.example", references=("ticket-1042@example.com",))
    answering_ours = keys("c@c.example", in_reply_to=(our_id,))
    assert tagged is not None and tagged.tickets == {1042}
    assert meet(tagged, pseudo) and meet(pseudo, answering_ours)
    assert not meet(tagged, keys("d@c.example", subject="Re: [Acme Support #1043] Printer"))
    assert not meet(tagged, keys("e@c.example", references=("ticket-1042@elsewhere.example",)))


def test_an_agents_reply_address_names_its_ticket_and_a_bounce_address_cannot_be_placed() -> None:
    agent = keys("agent@example.com", recipients=(reply_address(SECRET, "support@example.com", ticket=7, agent="a@x"),))
    assert agent is not None and agent.tickets == {7}
    assert keys("bounce@x.example", recipients=("support+b12.abcdefghijklmnop@example.com",)) is None
    assert keys("alias@x.example", recipients=("support+billing@example.com",)) is None


def test_thread_headers_read_what_parse_message_reads() -> None:
    """For every mail of a varied workload (and tagged, encoded, many-reference mail), the lean
    reading gives the Message-ID, parents and subject that the full parser gives."""
    extra = [
        make_mail(subject="=?utf-8?q?Re=3A_=5BAcme_Support_=231042=5D_P=C3=A4iv=C3=A4?=", in_reply_to="<a@b>"),
        make_mail(references=" ".join(f"<r{index}@c.example>" for index in range(150))),
        b"From: a@b.example\r\nSubject: no id\r\n\r\nbody\r\n",
    ]
    for raw in [*varied_workload()[:-3], *extra]:
        parsed = parse_message(raw)
        expected = ThreadHeaders(
            None if parsed.message_id_synthetic else parsed.message_id,
            parsed.in_reply_to,
            parsed.references,
            parsed.subject,
        )
        assert thread_headers(raw, whole=True) == expected


def test_a_header_block_cut_short_cannot_be_read() -> None:
    """Wherever the cut falls (in a name, a value, a line break), a header block that does not
    end in the head is not read; a whole one is."""
    raw = make_mail(extra_headers={"X-Long": "x" * 500, "X-Other": "y"})
    blank = raw.index(b"\r\n\r\n")
    for cut in range(1, blank + 2):
        assert thread_headers(raw[:cut], whole=False) is None, cut
    assert thread_headers(raw[: blank + 3], whole=False) is not None
    assert thread_headers(raw, whole=False) is not None
