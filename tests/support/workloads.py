"""Mail workloads shared by tests that file the same varied mail more than one way."""

from __future__ import annotations

from tests.support.mailfactory import make_mail


def varied_workload() -> list[bytes]:
    """Requests and replies (rules match some), attachments, HTML, several languages, a duplicate,
    an automatic reply, a non-mail, a mail over the address limit and a mail from our own address."""
    mails = []
    for n in range(12):
        request = f"<request-{n}@customer.example>"
        sender = f"customer{n % 5}@customer.example"
        subjects = ["Printer broken", "Palvelu alhaalla", "SKUBU: sąskaita", "Datenverlust", "Invoice copy"]
        attachments = [("report.pdf", "application/pdf", b"%PDF-1.4 " * 50)] if n % 4 == 0 else None
        mails.append(
            make_mail(
                sender=sender,
                subject=f"{subjects[n % len(subjects)]} {n}",
                message_id=request,
                html="<p>Hello <b>there</b></p>" if n % 3 == 0 else None,
                attachments=attachments,
            )
        )
        mails.append(
            make_mail(
                sender=sender,
                subject=f"Re: [Acme Support #{1000 + n}] ticket {n}",
                message_id=f"<reply-{n}@customer.example>",
                in_reply_to=request,
                references=request,
                body="Thanks, that fixed it.\n" if n % 6 == 1 else "Still broken, urgent please.\n",
            )
        )
    mails.append(mails[0])  # the same mail delivered twice
    automatic = {"Auto-Submitted": "auto-replied"}
    mails.append(make_mail(subject="Out of office", message_id="<away@customer.example>", extra_headers=automatic))
    mails.append(b"this is not a mail at all\r\n")
    # Failed (over the address limit) and ignored (from our own address: a mail loop).
    many = ",".join(f"u{i}@example.net" for i in range(1100))
    mails.append(f"From: a@evil.example\r\nTo: {many}\r\nSubject: many\r\n\r\nhi\r\n".encode())
    mails.append(make_mail(sender="support@example.com", subject="loop", message_id="<loop@example.com>"))
    return mails
