#!/usr/bin/env python3
"""Print CHANGELOG.md's section for one version: the GitHub release's notes.

Usage: changelog_section.py VERSION [CHANGELOG]  (VERSION as 1.2.3 or v1.2.3)

The section is Keep a Changelog's `## [1.2.3] - 2026-12-01` heading up to the next `## `
heading, without the heading and without the link definitions that end the file. A version
with no section, or an empty one, exits 1 with one line on stderr: a release needs notes.
Standard library only: the release workflow runs it before anything is installed.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

VERSION = re.compile(r"v?(\d+\.\d+\.\d+)")
LINK_DEFINITION = re.compile(r"^\[[^\]]+\]:\s*\S+")


def section(text: str, version: str) -> str:
    """The body of version's section in text; LookupError if it has none or it is empty."""
    found = VERSION.fullmatch(version.strip())
    if found is None:
        raise LookupError(f"{version!r} is not a version X.Y.Z")
    number = found[1]
    heading = re.compile(rf"^## \[?v?{re.escape(number)}\]?(?:\s|$)")
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if heading.match(line)]
    if not starts:
        raise LookupError(f"no section for {number} (a heading `## [{number}] - YYYY-MM-DD`)")
    if len(starts) > 1:
        raise LookupError(f"{len(starts)} sections for {number}")
    body: list[str] = []
    for line in lines[starts[0] + 1 :]:
        if line.startswith("## "):
            break
        body.append(line)
    while body and (not body[-1].strip() or LINK_DEFINITION.match(body[-1])):
        body.pop()
    while body and not body[0].strip():
        body.pop(0)
    if not body:
        raise LookupError(f"the section for {number} is empty")
    return "\n".join(body) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        print("usage: changelog_section.py VERSION [CHANGELOG]", file=sys.stderr)
        return 2
    path = Path(argv[1]) if len(argv) == 2 else Path(__file__).resolve().parents[2] / "CHANGELOG.md"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        print(f"{path}: cannot read it: {e.strerror or e}", file=sys.stderr)
        return 1
    try:
        sys.stdout.write(section(text, argv[0]))
    except LookupError as e:
        print(f"{path}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
