"""The slmops pages' HTML, from the Jinja templates in ui/templates (autoescaped)."""

from __future__ import annotations

import datetime
from functools import cache
from pathlib import Path

TEMPLATES = Path(__file__).with_name("templates")


@cache
def _environment():
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a template naming a missing field fails loudly
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["num"] = number
    environment.filters["when"] = when
    return environment


def render(template: str, **context) -> str:
    return _environment().get_template(template).render(**context)


def number(value) -> str:
    """4 significant digits; a dash for nothing."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def when(value) -> str:
    """A Unix time or an ISO string as 'YYYY-MM-DD HH:MM UTC'."""
    if value is None:
        return "–"
    if isinstance(value, int | float):
        value = datetime.datetime.fromtimestamp(value, datetime.UTC)
    else:
        try:
            value = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return str(value)
    return value.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
