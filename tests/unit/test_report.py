"""The report document: Markdown and self-contained HTML from the same blocks."""

from __future__ import annotations

import base64

import pytest

from slmops.report import Document, cell, verdict

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def test_cells_and_verdicts():
    assert cell(None) == "–" and cell(True) == "true" and cell(0.123456) == "0.1235"
    assert cell(3) == "3" and cell([1, 2]) == "[1, 2]"
    assert [verdict(v) for v in (True, False, None)] == ["PASS", "FAIL", "skipped"]


def test_markdown_and_html_carry_the_same_content(tmp_path):
    (tmp_path / "plot.png").write_bytes(PNG)
    document = Document("Report <one>")
    document.heading("Gates")
    document.paragraph("a <b> & c")
    document.table(["gate", "result", "value"], [["loss|gap", "PASS", 1.5], ["x", "FAIL", None]])
    document.bullets(["first", "second"])
    document.image(tmp_path / "plot.png", "a plot")
    document.code("key: value")
    markdown_path, html_path = document.write(tmp_path)

    markdown = markdown_path.read_text()
    assert markdown.startswith("# Report <one>\n")
    assert "| gate | result | value |\n|---|---|---|\n| loss\\|gap | PASS | 1.5 |" in markdown
    assert "| x | FAIL | – |" in markdown
    assert "- first\n- second\n" in markdown
    assert "![a plot](plot.png)" in markdown
    assert "```\nkey: value\n```" in markdown

    html = html_path.read_text()
    assert "<title>Report &lt;one&gt;</title>" in html
    assert "<p>a &lt;b&gt; &amp; c</p>" in html
    assert "<td class='pass'>PASS</td>" in html and "<td class='fail'>FAIL</td>" in html
    assert "<td class='num'>1.5</td>" in html
    assert f"data:image/png;base64,{base64.b64encode(PNG).decode()}" in html
    assert "<li>second</li>" in html and "<pre>key: value</pre>" in html


def test_images_must_sit_beside_the_report(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "plot.png").write_bytes(PNG)
    document = Document("r")
    document.image(tmp_path / "elsewhere" / "plot.png", "plot")
    with pytest.raises(ValueError, match="not in the report folder"):
        document.write(tmp_path)
    assert not (tmp_path / "report.md").exists()
