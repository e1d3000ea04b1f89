"""Which ticket a message belongs to: pure functions over plain data (tier 1).

Never write `from mailgate import threading`; import the names below.
"""

from mailgate.threading.decide import ThreadingFacts, thread_message
from mailgate.threading.references import candidate_message_ids, pseudo_reference, pseudo_ticket_numbers
from mailgate.threading.subject import clean_subject, find_subject_tag, format_subject_tag, strip_reply_prefixes

__all__ = [
    "ThreadingFacts",
    "candidate_message_ids",
    "clean_subject",
    "find_subject_tag",
    "format_subject_tag",
    "pseudo_reference",
    "pseudo_ticket_numbers",
    "strip_reply_prefixes",
    "thread_message",
]
