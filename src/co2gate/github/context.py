"""What GitHub Actions tells a step about its run, read from the runner's environment."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def ci_context(env: Mapping[str, str]) -> dict[str, Any] | None:
    """The `ci` block of emissions.json, or None outside GitHub Actions.

    On pull_request events GITHUB_SHA is the merge commit: the head commit, which is what
    the author pushed, comes from the event payload.
    """
    if env.get("GITHUB_ACTIONS") != "true":
        return None
    event = _event_payload(env.get("GITHUB_EVENT_PATH"))
    pull = event.get("pull_request") if isinstance(event.get("pull_request"), dict) else None
    head_sha = pull.get("head", {}).get("sha") if pull else None
    base_sha = pull.get("base", {}).get("sha") if pull else None
    number = pull.get("number") if pull else None
    return {
        "provider": "github",
        "repository": env.get("GITHUB_REPOSITORY", ""),
        "sha": head_sha or env.get("GITHUB_SHA", ""),
        "ref": env.get("GITHUB_REF", ""),
        "head_ref": env.get("GITHUB_HEAD_REF") or None,
        "base_ref": env.get("GITHUB_BASE_REF") or None,
        "base_sha": base_sha if isinstance(base_sha, str) else None,
        "event": env.get("GITHUB_EVENT_NAME", ""),
        "pr": number if isinstance(number, int) else None,
        "workflow": env.get("GITHUB_WORKFLOW", ""),
        "job": env.get("GITHUB_JOB", ""),
        "run_id": env.get("GITHUB_RUN_ID", ""),
        "run_attempt": env.get("GITHUB_RUN_ATTEMPT", ""),
        "server_url": env.get("GITHUB_SERVER_URL", "https://github.com"),
    }


def _event_payload(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            payload = json.load(f)
    except (OSError, ValueError):
        return {}
    return payload if isinstance(payload, dict) else {}
