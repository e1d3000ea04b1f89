"""Rendering outgoing mail with jinja2: autoescaped HTML, strict undefined, per-language templates (tier 2).

Templates are looked up in the configured override directory first, then in the ones shipped
with mailgate; a language without a template falls back to English. The first line of a text
template is `Subject: ...`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, TemplateNotFound, select_autoescape

from mailgate.notify.templates_index import SHIPPED_TEMPLATES


@dataclass(frozen=True)
class RenderedMail:
    subject: str
    text: str
    html: str


class TemplateRenderer:
    def __init__(self, override_dir: Path | None = None) -> None:
        loaders = [FileSystemLoader(str(override_dir))] if override_dir else []
        loaders.append(FileSystemLoader(str(SHIPPED_TEMPLATES)))
        self.environment = Environment(
            loader=ChoiceLoader(loaders),
            # HTML is escaped; a customer's "<script>" in a subject stays text (Zammad CVE-2018-1000154).
            autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
            undefined=StrictUndefined,
            keep_trailing_newline=True,
        )

    def _get(self, language: str, name: str, kind: str) -> Any:
        try:
            return self.environment.get_template(f"{language}/{name}.{kind}.j2")
        except TemplateNotFound:
            return self.environment.get_template(f"en/{name}.{kind}.j2")

    def render(self, name: str, language: str, context: dict[str, Any]) -> RenderedMail:
        """Subject, plain text and HTML of one mail; raises jinja2 errors for a broken template."""
        text = self._get(language, name, "txt").render(context)
        first, _, body = text.partition("\n")
        if not first.startswith("Subject:"):
            raise ValueError(f"template {language}/{name}.txt.j2 must start with a 'Subject:' line")
        subject = " ".join(first.removeprefix("Subject:").split())
        html = self._get(language, name, "html").render({**context, "subject": subject})
        return RenderedMail(subject=subject, text=body.lstrip("\n"), html=html)
