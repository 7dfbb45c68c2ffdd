"""A Sphinx fix for the book's site, loaded through ``sphinx.local_extensions`` in _config.yml.

Jupyter Book 1's sphinx-thebe adds its inline configuration script twice to every page on this
Sphinx (``const THEBE_JS_URL = ...`` declared twice: a JavaScript error on every page). This
drops repeated scripts and style sheets from each page's list, keeping the first of each.
"""

from __future__ import annotations

from typing import Any


def _identity(item: Any) -> tuple[str, tuple[tuple[str, str], ...]]:
    attributes = getattr(item, "attributes", {}) or {}
    # An inline script's file name is None or "" depending on who added it: the same script.
    name = getattr(item, "filename", item) or ""
    return str(name), tuple(sorted((str(k), str(v)) for k, v in attributes.items()))


def drop_repeats(app: Any, pagename: str, templatename: str, context: dict[str, Any],
                 doctree: Any) -> None:
    for key in ("script_files", "css_files"):
        items = context.get(key)
        if not items:
            continue
        seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        kept = []
        for item in items:
            identity = _identity(item)
            if identity not in seen:
                seen.add(identity)
                kept.append(item)
        context[key] = kept


def setup(app: Any) -> dict[str, Any]:
    app.connect("html-page-context", drop_repeats, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
