"""Templates in three languages, autoescaped HTML, and override directories."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailgate.notify.context import TicketFacts, base_context, pick_language, status_context
from mailgate.notify.render import TemplateRenderer

TICKET = TicketFacts(1042, "<script>alert(1)</script> printer", "resolved", "high", "support", "a@b.example")


def context(language: str) -> dict[str, object]:
    return {
        **base_context(TICKET, tag="[Acme #1042]", desk_name="Acme", language=language),
        **status_context("open", "resolved", language),
        "customer_name": "Alice",
    }


@pytest.mark.parametrize(
    ("language", "phrase"), [("en", "has been resolved"), ("fi", "on ratkaistu"), ("lt", "išspręsta")]
)
def test_status_mail_renders_in_each_language(language: str, phrase: str) -> None:
    """The resolved notice exists in English, Finnish and Lithuanian."""
    mail = TemplateRenderer().render("status_changed", language, context(language))
    assert phrase in mail.text and mail.subject.startswith("[Acme #1042]")


@pytest.mark.parametrize(
    "name", ["acknowledgement", "status_changed", "agent_notification", "agent_reply", "escalation"]
)
@pytest.mark.parametrize("language", ["en", "fi", "lt"])
def test_every_template_exists_in_every_language(name: str, language: str) -> None:
    """Each kind of mail has a text and an HTML template in each shipped language."""
    shipped = Path(__file__).parents[2] / "mailgate" / "notify" / "templates" / language
    assert (shipped / f"{name}.txt.j2").is_file() and (shipped / f"{name}.html.j2").is_file()


def test_html_is_escaped_and_text_is_not() -> None:
    """A customer's markup is inert in HTML; the plain text keeps the characters."""
    mail = TemplateRenderer().render("status_changed", "en", context("en"))
    assert "<script>" not in mail.html and "&lt;script&gt;" in mail.html
    assert "<script>" in mail.text


def test_override_directory_wins(tmp_path: Path) -> None:
    """A template in notify.templates_dir replaces the shipped one."""
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "status_changed.txt.j2").write_text("Subject: custom {{ tag }}\n\nOur own words.\n")
    mail = TemplateRenderer(tmp_path).render("status_changed", "en", context("en"))
    assert mail.subject == "custom [Acme #1042]" and "Our own words." in mail.text


def test_language_is_picked_from_content_language() -> None:
    """fi-FI gives fi; an unsupported language falls back to the default."""
    assert pick_language("fi-FI, en", "en") == "fi"
    assert pick_language("de", "lt") == "lt"
    assert pick_language(None, "en") == "en"
