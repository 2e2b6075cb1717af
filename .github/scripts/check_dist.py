#!/usr/bin/env python3
"""Check a built sdist and wheel before they are published.

Usage: check_dist.py DIST_DIR [--version X.Y.Z]

DIST_DIR must hold exactly one co2gate sdist and one wheel, of the same version (the given
one, from the release tag, when --version is passed). Both must hold, as regular files,
py.typed, every template under the repository's templates/ and every JSON Schema under
src/co2gate/schemas/ (the templates reach the package through the symlink
src/co2gate/templates, which the sdist must have resolved), and the wheel the `co2gate`
console script. Prints each file's size; exits 1 with one line per problem.
Standard library only.
"""

from __future__ import annotations

import re
import sys
import tarfile
import zipfile
from email.parser import HeaderParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def expected() -> list[str]:
    """The package files that must ship, relative to the package: co2gate/..."""
    names = ["co2gate/__init__.py", "co2gate/cli.py", "co2gate/py.typed"]
    names += [f"co2gate/templates/{p.name}" for p in sorted((ROOT / "templates").glob("*.j2"))]
    schemas = ROOT / "src" / "co2gate" / "schemas"
    names += [f"co2gate/schemas/{p.name}" for p in sorted(schemas.glob("*.json"))]
    return names


def check(dist: Path, version: str | None) -> list[str]:
    """The problems with the distributions in dist; none means they can be published."""
    wheels = sorted(dist.glob("*.whl"))
    sdists = sorted(dist.glob("*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        return [f"{dist}: {len(wheels)} wheels and {len(sdists)} sdists, not one of each"]
    wheel, sdist = wheels[0], sdists[0]
    problems: list[str] = []
    found = re.fullmatch(r"co2gate-([^-]+)-py3-none-any\.whl", wheel.name)
    if found is None:
        return [f"{wheel.name}: not a pure-Python co2gate wheel"]
    built = found[1]
    if version is not None and built != version.removeprefix("v"):
        problems.append(f"{wheel.name}: version {built}, but the tag says {version}")
    if sdist.name != f"co2gate-{built}.tar.gz":
        problems.append(f"{sdist.name}: not the sdist of co2gate {built}")
    want = expected()

    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        problems += [f"{wheel.name}: no {name}" for name in want if name not in names]
        meta = f"co2gate-{built}.dist-info"
        if f"{meta}/METADATA" in names:
            headers = HeaderParser().parsestr(z.read(f"{meta}/METADATA").decode())
            if headers["Version"] != built:
                problems.append(f"{wheel.name}: METADATA says version {headers['Version']}")
        else:
            problems.append(f"{wheel.name}: no {meta}/METADATA")
        entry_points = f"{meta}/entry_points.txt"
        scripts = z.read(entry_points).decode() if entry_points in names else ""
        if not re.search(r"^co2gate\s*=\s*co2gate\.launch:main\s*$", scripts, re.MULTILINE):
            problems.append(f"{wheel.name}: no console script co2gate = co2gate.launch:main")

    with tarfile.open(sdist) as t:
        members = {m.name: m for m in t.getmembers()}
    prefix = f"co2gate-{built}/src/"
    for name in want:
        member = members.get(prefix + name)
        if member is None:
            problems.append(f"{sdist.name}: no {prefix}{name}")
        elif not member.isfile():
            problems.append(f"{sdist.name}: {prefix}{name} is not a regular file")
    for path in (wheel, sdist):
        print(f"{path.name}: {path.stat().st_size / 1024:.0f} KiB")
    return problems


def main(argv: list[str]) -> int:
    version = None
    if len(argv) == 3 and argv[1] == "--version":
        version = argv[2]
    elif len(argv) != 1:
        print("usage: check_dist.py DIST_DIR [--version X.Y.Z]", file=sys.stderr)
        return 2
    problems = check(Path(argv[0]), version)
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"ok: the sdist and the wheel hold the {len(expected())} files that must ship")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
