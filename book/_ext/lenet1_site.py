"""Two Sphinx fixes for the book's site, loaded through ``sphinx.local_extensions`` in _config.yml.

Jupyter Book 1's sphinx-thebe adds its inline configuration script twice to every page on this
Sphinx (``const THEBE_JS_URL = ...`` declared twice: a JavaScript error on every page). This
drops repeated scripts and style sheets from each page's list, keeping the first of each.

And _config.yml can only give ``nitpick_ignore`` as a list of lists, where Sphinx looks up
``(type, target)`` tuples, so no entry would ever match: they are made tuples when the
configuration is read.
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


def nitpick_tuples(app: Any, config: Any) -> None:
    config.nitpick_ignore = [tuple(entry) for entry in config.nitpick_ignore or []]


def setup(app: Any) -> dict[str, Any]:
    app.connect("config-inited", nitpick_tuples)
    app.connect("html-page-context", drop_repeats, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
