"""Which mail templates exist: the shipped ones and those in an override directory (stdlib only).

Configuration checks rule actions such as `auto_reply = "NAME"` against this list at start-up,
so a typo stops the daemon instead of failing when the first mail is sent.
"""

from __future__ import annotations

from pathlib import Path

SHIPPED_TEMPLATES = Path(__file__).parent / "templates"


def template_names(override_dir: Path | None = None) -> frozenset[str]:
    """Names with a text template (`<language>/<name>.txt.j2`) in any language."""
    names: set[str] = set()
    for root in (SHIPPED_TEMPLATES, override_dir):
        if root is not None and root.is_dir():
            names.update(path.name.removesuffix(".txt.j2") for path in root.glob("*/*.txt.j2"))
    return frozenset(names)


def canned_texts(override_dir: Path | None = None) -> dict[str, str]:
    """Canned responses by name (`canned/<name>.txt`); an override directory's replace the shipped ones."""
    texts: dict[str, str] = {}
    for root in (SHIPPED_TEMPLATES, override_dir):
        if root is not None and (root / "canned").is_dir():
            for path in sorted((root / "canned").glob("*.txt")):
                texts[path.stem] = path.read_text(encoding="utf-8")
    return texts
