"""Who an agent's mail really comes from: our signed reply address, or a trusted DKIM pass (tier 1).

Authentication-Results (RFC 8601) count only when their authserv-id is the one configured for
the MTA in front, and only the topmost such header (the one that MTA added; RFC 8601 section 5
says a border MTA removes copies that claim its id). A From address alone proves nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailgate.domain.message import ParsedMessage
from mailgate.mail.tokens import verify_reply_address

_RESULT = re.compile(r"\bdkim\s*=\s*(\w+)(?P<props>[^;]*)", re.IGNORECASE)
_HEADER_D = re.compile(r"\bheader\.d\s*=\s*([A-Za-z0-9.-]+)", re.IGNORECASE)


@dataclass(frozen=True)
class AgentProof:
    """An agent whose identity was verified, how, and for which ticket (None: no ticket named)."""

    agent: str
    method: str
    ticket: int | None


def dkim_pass_domains(parsed: ParsedMessage, authserv_id: str) -> frozenset[str]:
    """Domains with dkim=pass in the topmost Authentication-Results of our trusted MTA."""
    for value in parsed.header("authentication-results"):
        server, _, results = value.partition(";")
        if server.strip().split()[0:1] != [authserv_id]:
            continue
        domains = set()
        for match in _RESULT.finditer(results):
            if match.group(1).lower() == "pass":
                domain = _HEADER_D.search(match.group("props"))
                if domain:
                    domains.add(domain.group(1).lower().rstrip("."))
        return frozenset(domains)
    return frozenset()


def _aligned(sender_domain: str, signing_domains: frozenset[str]) -> bool:
    """Relaxed DMARC alignment: the signing domain is the sender's domain or a parent of it."""
    return any(sender_domain == d or sender_domain.endswith("." + d) for d in signing_domains)


def verify_agent(
    parsed: ParsedMessage,
    recipients: tuple[str, ...],
    *,
    agents: frozenset[str],
    secret: bytes,
    authserv_id: str | None,
) -> tuple[AgentProof | None, str | None]:
    """(proof, None) for a verified agent; (None, why not) for an agent address without proof.

    (None, None) means the sender is not an agent address at all.
    """
    sender = parsed.sender.address
    if sender is None or sender.email not in agents:
        return None, None
    if not parsed.sender.trusted:
        return None, f"the From header is not trustworthy ({parsed.sender.problem})"
    addressed = (*recipients, *(a.email for a in (*parsed.to, *parsed.cc)))
    for address in addressed:
        ticket = verify_reply_address(secret, address, sender=sender.email)
        if ticket is not None:
            return AgentProof(sender.email, "reply token", ticket), None
    if authserv_id and _aligned(sender.email.rpartition("@")[2], dkim_pass_domains(parsed, authserv_id)):
        return AgentProof(sender.email, f"DKIM pass reported by {authserv_id}", None), None
    if any("+t" in address.partition("@")[0] for address in addressed):
        return None, "the reply token does not match this agent or ticket"
    return None, "no reply token and no trusted DKIM pass"
