"""GitHub tokens: read in one place, kept from the measured command, masked in all co2gate writes.

`github_token(env)` is the only reader of the token: from the file CO2GATE_TOKEN_FILE names
(the Action writes it in an earlier step, so no ancestor of the command holds the token in
its environment; the file is deleted once read), else from GITHUB_TOKEN. Surrounding
whitespace is stripped (a secret pasted with a newline). Every token seen is registered, and
`mask(text)` replaces each form of it that text can carry (raw, stripped, repr- and
JSON-escaped, URL-encoded, base64, Markdown- and workflow-command-escaped) by ***. The
writers of stderr lines, report files, runner files and comment bodies call `mask`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping

from co2gate.errors import InputError

TYPE_CHECKING = False  # typing's, without importing typing or re before the command starts
if TYPE_CHECKING:
    import re

TOKEN_FILE = "CO2GATE_TOKEN_FILE"
# Variables that hold a GitHub token for co2gate, gh or git credential helpers; and the
# action's input, which nektos/act (unlike GitHub) sets for every step of a composite action.
TOKEN_VARIABLES = (
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "GH_ENTERPRISE_TOKEN",
    "GITHUB_ENTERPRISE_TOKEN",
    "INPUT_GITHUB-TOKEN",
)
# What the measured command's environment never carries.
CHILD_DROPPED = (*TOKEN_VARIABLES, TOKEN_FILE)
MASK = "***"
MIN_FORM = 4  # shorter forms (a base64 piece of a tiny value) would mask ordinary text

_lock = threading.Lock()
_secrets: set[str] = set()
_unformed: list[str] = []  # registered, their forms not worked out yet (at the first mask)
_forms: set[str] = set()
_pattern: re.Pattern[str] | None = None
_from_files: dict[str, str] = {}  # token file path -> what it held (the file is gone)
_withheld: set[str] = set()  # more variables the command must not see (withhold)


class TokenFileError(InputError):
    """The token file the Action handed over cannot be read."""


def github_token(env: Mapping[str, str]) -> str:
    """The GitHub token co2gate uses, stripped; "" when there is none. Registers it (and
    every token variable in env) for masking. Raises TokenFileError when CO2GATE_TOKEN_FILE
    names a file that cannot be read."""
    watch(env)
    path = env.get(TOKEN_FILE, "")
    token = _read_file(path) if path else env.get("GITHUB_TOKEN", "")
    register(token)
    return token.strip()


def watch(env: Mapping[str, str]) -> None:
    """Register every token variable's value in env for masking (reads no file)."""
    for name in TOKEN_VARIABLES:
        register(env.get(name, ""))


def withhold(*names: str | None) -> None:
    """Keep these variables (a grid provider's key, which only co2gate uses, after the
    command) out of the command's environment too."""
    with _lock:
        _withheld.update(n for n in names if n)


def child_environment(env: Mapping[str, str]) -> dict[str, str]:
    """env without the variables that hold a GitHub token or point at one, or that were
    withheld; the rest (a tracker's key the user's code needs) is left alone."""
    with _lock:
        dropped = {*CHILD_DROPPED, *_withheld}
    return {k: v for k, v in env.items() if k not in dropped}


def _read_file(path: str) -> str:
    """The token in path, read once and deleted; the same text on later calls."""
    with _lock:
        if path in _from_files:
            return _from_files[path]
        try:
            with open(path, encoding="utf-8") as f:
                token = f.read()
        except (OSError, UnicodeDecodeError) as e:
            why = e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__
            raise TokenFileError(f"cannot read the token file {TOKEN_FILE}={path}: {why}") from e
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise TokenFileError(
                f"cannot delete the token file {TOKEN_FILE}={path}: {e.strerror or e}"
            ) from e
        _from_files[path] = token
    register(token)
    return token


def register(secret: str) -> None:
    """Mask secret (as given and stripped, in every form) from now on. Cheap: its forms are
    worked out when text is first masked (co2gate/launch.py registers before the command)."""
    global _pattern
    if not secret.strip() or secret in _secrets:
        return
    with _lock:
        _secrets.add(secret)
        _unformed.append(secret)
        _pattern = None


def mask(text: str) -> str:
    """text with every form of every registered secret shown as ***."""
    pattern = _compiled()
    return pattern.sub(MASK, text) if pattern is not None else text


def forms(secret: str) -> set[str]:
    """Each way secret can appear in text co2gate writes: as given and stripped; escaped by
    repr, JSON or URL encoding; then as is, JSON-escaped again, Markdown-escaped (as
    report.md escapes text), HTML-escaped or escaped for a workflow command; and base64,
    at each of the three alignments it can have inside a longer encoded text."""
    import html
    import json
    from urllib.parse import quote, quote_plus

    bases = {secret, secret.strip()} - {""}
    inner: set[str] = set()
    for s in bases:
        inner |= {s, repr(s)[1:-1], json.dumps(s)[1:-1], quote(s, safe=""), quote_plus(s)}
        inner.add(json.dumps(s, ensure_ascii=False)[1:-1])
    out: set[str] = set()
    for s in inner:
        out |= {s, json.dumps(s)[1:-1], _markdown(s), html.escape(s), html.escape(s, False)}
        out |= {_workflow_data(s), _workflow_property(s)}
    for s in bases:
        out |= set(_base64_pieces(s.encode("utf-8")))
    return out - {""}


def _compiled() -> re.Pattern[str] | None:
    global _pattern
    with _lock:
        for secret in _unformed:
            _forms.update(f for f in forms(secret) if len(f) >= MIN_FORM)
        _unformed.clear()
        if _pattern is None and _forms:
            ordered = sorted(_forms, key=len, reverse=True)  # the longest form wins
            import re  # here, not before the command starts (co2gate/launch.py)

            _pattern = re.compile("|".join(re.escape(f) for f in ordered))
        return _pattern


# report.md's escaping (report.md()): line breaks become spaces, &<> entities, punctuation
# that could start markup backslash-escaped, @ followed by a zero-width space.
_MD_SPECIAL = r"([\\`*_\[\]|~#])"


def _markdown(s: str) -> str:
    s = " ".join(s.splitlines())
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    import re

    return re.sub(_MD_SPECIAL, r"\\\1", s).replace("@", "@\u200b")


def _workflow_data(s: str) -> str:
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _workflow_property(s: str) -> str:
    return _workflow_data(s).replace(":", "%3A").replace(",", "%2C")


def _base64_pieces(data: bytes) -> Iterable[str]:
    """The base64 characters that depend on data alone, for data starting at byte offset 0,
    1 or 2 of a 3-byte group (standard and URL-safe alphabets)."""
    import base64

    n = len(data)
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + data).decode("ascii").rstrip("=")
        first = -(-8 * shift // 6)  # the first character made only of data's bits
        last = 8 * (shift + n) // 6  # one past the last such character
        piece = encoded[first:last]
        yield piece
        yield piece.replace("+", "-").replace("/", "_")


def _forget() -> None:
    """Drop every registered secret (tests)."""
    global _pattern
    with _lock:
        _secrets.clear()
        _unformed.clear()
        _forms.clear()
        _from_files.clear()
        _pattern = None
