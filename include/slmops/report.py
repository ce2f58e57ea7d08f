"""A small document model rendered to report.md and a self-contained report.html.

Stages add sections (headings, paragraphs, tables, images, code); ``write`` renders both
files into a folder, with each image saved beside the Markdown and embedded in the HTML
(base64), so the HTML opens anywhere: a browser, the Airflow UI's artifact view, S3.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slmops.artifacts import atomic_write_text

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #1f2328; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid #d0d7de; padding: 4px 9px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.pass { color: #1a7f37; font-weight: 600; } .fail { color: #cf222e; font-weight: 600; }
.skip { color: #6e7781; }
pre { background: #f6f8fa; padding: 0.8em; overflow-x: auto; font-size: 0.88em; }
img { max-width: 100%; border: 1px solid #d0d7de; }
"""
# Chat-template markers (<|im_start|>, <s>...) that mean nothing to a reader of a prompt.
_SPECIAL_TOKEN = re.compile(r"<\|[^|<>]{1,40}\|>|</?s>")
_VERDICT_CLASS = {"PASS": "pass", "FAIL": "fail", "skipped": "skip"}


def verdict(passed: bool | None) -> str:
    return {True: "PASS", False: "FAIL", None: "skipped"}[passed]


def prompt_tail(prompt: str, width: int = 90) -> str:
    """The end of a prompt as a reviewer reads it: template markers and runs of white
    space dropped, at most ``width`` characters (the end is where the question is)."""
    text = " ".join(_SPECIAL_TOKEN.sub(" ", prompt).split())
    return text if len(text) <= width else "…" + text[-width:]


def cell(value: Any) -> str:
    """A table cell: floats to 4 significant digits, None as a dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


@dataclass
class Document:
    title: str
    blocks: list[tuple] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(("heading", level, text))

    def paragraph(self, text: str) -> None:
        self.blocks.append(("paragraph", text))

    def bullets(self, items: Sequence[str]) -> None:
        self.blocks.append(("bullets", list(items)))

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.blocks.append(("table", list(headers), [[cell(v) for v in row] for row in rows]))

    def image(self, path: Path, alt: str) -> None:
        self.blocks.append(("image", Path(path), alt))

    def code(self, text: str) -> None:
        self.blocks.append(("code", text))

    def to_markdown(self) -> str:
        parts = [f"# {self.title}\n"]
        for kind, *rest in self.blocks:
            parts.append(getattr(self, f"_md_{kind}")(*rest))
        return "\n".join(parts)

    def to_html(self) -> str:
        body = [f"<h1>{html.escape(self.title)}</h1>"]
        for kind, *rest in self.blocks:
            body.append(getattr(self, f"_html_{kind}")(*rest))
        return (
            "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(self.title)}</title><style>{_STYLE}</style></head>"
            "<body>\n" + "\n".join(body) + "\n</body></html>\n"
        )

    def write(self, folder: Path, stem: str = "report") -> tuple[Path, Path]:
        """``folder/STEM.md`` and ``folder/STEM.html``; images must already be in ``folder``."""
        folder = Path(folder)
        for kind, *rest in self.blocks:
            if kind == "image" and rest[0].parent.resolve() != folder.resolve():
                raise ValueError(f"image {rest[0]} is not in the report folder {folder}")
        markdown, page = folder / f"{stem}.md", folder / f"{stem}.html"
        atomic_write_text(markdown, self.to_markdown())
        atomic_write_text(page, self.to_html())
        return markdown, page

    # Markdown

    @staticmethod
    def _md_heading(level: int, text: str) -> str:
        return f"{'#' * level} {text}\n"

    @staticmethod
    def _md_paragraph(text: str) -> str:
        return f"{text}\n"

    @staticmethod
    def _md_bullets(items: list[str]) -> str:
        return "".join(f"- {item}\n" for item in items)

    @staticmethod
    def _md_table(headers: list[str], rows: list[list[str]]) -> str:
        def line(values: Sequence[str]) -> str:
            escaped = (value.replace("|", "\\|").replace("\n", " ") for value in values)
            return "| " + " | ".join(escaped) + " |"

        lines = [line(headers), "|" + "|".join("---" for _ in headers) + "|"]
        lines.extend(line(row) for row in rows)
        return "\n".join(lines) + "\n"

    @staticmethod
    def _md_image(path: Path, alt: str) -> str:
        return f"![{alt}]({path.name})\n"

    @staticmethod
    def _md_code(text: str) -> str:
        return f"```\n{text}\n```\n"

    # HTML

    @staticmethod
    def _html_heading(level: int, text: str) -> str:
        return f"<h{level}>{html.escape(text)}</h{level}>"

    @staticmethod
    def _html_paragraph(text: str) -> str:
        return f"<p>{html.escape(text)}</p>"

    @staticmethod
    def _html_bullets(items: list[str]) -> str:
        return "<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in items) + "</ul>"

    @staticmethod
    def _html_table(headers: list[str], rows: list[list[str]]) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
        body = []
        for row in rows:
            cells = []
            for value in row:
                css = _VERDICT_CLASS.get(value) or ("num" if _is_number(value) else "")
                attribute = f" class='{css}'" if css else ""
                cells.append(f"<td{attribute}>{html.escape(value)}</td>")
            body.append("<tr>" + "".join(cells) + "</tr>")
        return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"

    @staticmethod
    def _html_image(path: Path, alt: str) -> str:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return f"<p><img src='data:image/png;base64,{data}' alt='{html.escape(alt)}'></p>"

    @staticmethod
    def _html_code(text: str) -> str:
        return f"<pre>{html.escape(text)}</pre>"


def _is_number(text: str) -> bool:
    try:
        float(text.replace("+", "", 1))
    except ValueError:
        return False
    return True
