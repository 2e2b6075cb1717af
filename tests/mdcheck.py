"""Checks that a rendered report is Markdown GitHub renders as intended.

- it parses as CommonMark with GFM tables (markdown-it-py), and every table row has as many
  cells as its header (GitHub would silently drop or pad them);
- the only raw HTML is ours: <details>, <summary>, <sub> and their closing tags, balanced
  and properly nested (anything else is an injection that got through);
- every mermaid block is an `xychart-beta` chart in the grammar Mermaid documents, each
  series as long as the x-axis.
Returns a list of problems; empty means valid.
"""

from __future__ import annotations

import re

from markdown_it import MarkdownIt

ALLOWED_TAGS = {"details", "summary", "sub"}
TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)[^>]*>")
CELL_SPLIT = re.compile(r"(?<!\\)\|")
NUMBER = r"-?\d+(?:\.\d+)?"
MERMAID_LINES = {
    "title": re.compile(r'^title "[^"]*"$'),
    "x-axis": re.compile(r"^x-axis \[(?P<items>[A-Za-z0-9]+(?:, [A-Za-z0-9]+)*)\]$"),
    "y-axis": re.compile(rf'^y-axis "[^"]*" {NUMBER} --> {NUMBER}$'),
    "bar": re.compile(rf"^bar \[(?P<items>{NUMBER}(?:, {NUMBER})*)\]$"),
    "line": re.compile(rf"^line \[(?P<items>{NUMBER}(?:, {NUMBER})*)\]$"),
}


def problems(text: str) -> list[str]:
    md = MarkdownIt("commonmark").enable("table")
    tokens = md.parse(text)
    found: list[str] = []
    found += _tables(text, tokens)
    found += _html(tokens)
    for token in tokens:
        if token.type == "fence" and token.info.strip() == "mermaid":
            found += _mermaid(token.content)
    return found


def _cells(line: str) -> int:
    return len(CELL_SPLIT.split(line.strip().strip("|")))


def _tables(text: str, tokens: list) -> list[str]:  # type: ignore[type-arg]
    lines = text.splitlines()
    found = []
    for token in tokens:
        if token.type != "table_open" or token.map is None:
            continue
        start, end = token.map
        rows = [line for line in lines[start:end] if line.strip()]
        width = _cells(rows[0])
        for number, row in enumerate(rows[1:], start=start + 2):
            if _cells(row) != width:
                found.append(f"line {number}: {_cells(row)} cells, header has {width}: {row}")
    return found


def _html(tokens: list) -> list[str]:  # type: ignore[type-arg]
    found, stack = [], []
    chunks = []
    for token in tokens:
        if token.type == "html_block":
            chunks.append(token.content)
        for child in token.children or []:
            if child.type == "html_inline":
                chunks.append(child.content)
    for chunk in chunks:
        for closing, name in TAG.findall(chunk):
            name = name.lower()
            if name not in ALLOWED_TAGS:
                found.append(f"raw HTML <{closing}{name}> in the output")
            elif not closing:
                stack.append(name)
            elif not stack or stack.pop() != name:
                found.append(f"</{name}> closes nothing open")
    found += [f"<{name}> never closed" for name in stack]
    return found


def _mermaid(source: str) -> list[str]:
    lines = [line.strip() for line in source.strip().splitlines()]
    if not lines or lines[0] != "xychart-beta":
        return [f"mermaid block does not start with xychart-beta: {lines[:1]}"]
    found, lengths, axis = [], [], None
    for line in lines[1:]:
        keyword = line.split(" ", 1)[0]
        pattern = MERMAID_LINES.get(keyword)
        match = pattern.match(line) if pattern else None
        if match is None:
            found.append(f"mermaid: not xychart-beta grammar: {line}")
            continue
        if "items" in match.groupdict():
            count = len(match["items"].split(", "))
            if keyword == "x-axis":
                axis = count
            else:
                lengths.append(count)
    if axis is None:
        found.append("mermaid: no x-axis categories")
    elif any(n != axis for n in lengths):
        found.append(f"mermaid: series lengths {lengths} differ from the x-axis's {axis}")
    if not lengths:
        found.append("mermaid: no data series")
    return found
