"""The small factory that picks the ledger the budget file asks for."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from co2gate.ledger.interface import Ledger
from co2gate.tokens import github_token

if TYPE_CHECKING:
    from co2gate.budget import LedgerConfig


def open_ledger(config: LedgerConfig, env: Mapping[str, str]) -> tuple[Ledger, str]:
    """The ledger the budget file asks for, and a line saying which it is.

    The branch ledger needs GitHub Actions and a token; anywhere else (a laptop) the run
    is recorded to the file ledger at ledger.path instead, as the README says.
    """
    # Each ledger is imported only when chosen: the branch one brings PyGithub.
    backend = config.backend.value
    if backend == "none":
        from co2gate.ledger.none import NoneLedger

        return NoneLedger(), "ledger: none"
    token, repository = github_token(env), env.get("GITHUB_REPOSITORY", "")
    if backend == "branch" and env.get("GITHUB_ACTIONS") == "true" and token and repository:
        from co2gate.ledger.branch import BranchLedger

        api_url = env.get("GITHUB_API_URL", "https://api.github.com")
        ledger = BranchLedger(repository, token, branch=config.branch, api_url=api_url)
        return ledger, f"ledger: branch {config.branch} of {repository}"
    from co2gate.ledger.file import FileLedger

    return FileLedger(Path(config.path)), f"ledger: file {config.path}"
