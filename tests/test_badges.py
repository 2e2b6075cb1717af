"""Badges: a shields.io endpoint JSON per category, written in the same commit as the ledger
entry (the branch ledger, through tests/fakegithub.py and real PyGithub) or beside the file
ledger; one compare-and-swap, retried on fresh data."""

from __future__ import annotations

import json
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fakegithub import FakeGitHub

from co2gate import badge
from co2gate import budget as budgets
from co2gate.app import gate
from co2gate.ledger.branch import BranchLedger
from co2gate.ledger.file import FileLedger
from co2gate.ledger.interface import (
    Beside,
    LedgerReadOnly,
    entry_key,
    parse_shard,
)
from co2gate.ledger.none import NoneLedger
from co2gate.model import Measurement

REPO, BRANCH = "octo/lab", "co2gate-ledger"
YEAR = (date(2026, 1, 1), date(2027, 1, 1))
ALLOCATIONS = {"training": 100.0, "inference": 50.0}
SHARD = "2026/03.jsonl"  # the month of the entries below


def entry(
    run: str, kg: float, category: str = "training", day: str = "2026-03-04"
) -> dict[str, Any]:
    base: dict[str, Any] = {
        "repository": REPO,
        "run_id": run,
        "run_attempt": "1",
        "job": "train",
        "label": "train",
        "category": category,
        "emissions_kg": kg,
        "energy_kwh": 1.0,
        "duration_s": 60.0,
        "ended_at": f"{day}T10:00:00.000+00:00",
        "sha": "abc123",
        "ref": "refs/heads/main",
        "event": "push",
        "pr": None,
    }
    return {"key": entry_key(base)} | base


def beside(warn_at: float = 0.8) -> Beside:
    return Beside(*YEAR, lambda entries: badge.files(entries, ALLOCATIONS, warn_at))


def ledger(fake: FakeGitHub, token: str | None = None) -> BranchLedger:
    return BranchLedger(
        REPO, token or fake.token, api_url=fake.api_url, sleep=lambda s: None, rng=lambda: 0.5
    )


def tree_text(fake: FakeGitHub, commit: str, path: str) -> str | None:
    repo = fake.repos[REPO]
    blob = repo.trees[repo.commits[commit]["tree"]].get(path)
    return None if blob is None else repo.blobs[blob].decode()


# -- the badge itself --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("used", "colour"),
    [
        (0.0, "green"),
        (79.9, "green"),
        (80.0, "yellow"),  # warn_at 0.8 of 100 kg: from the warning line on
        (99.9, "yellow"),
        (100.0, "yellow"),  # all of it, not over it
        (100.1, "red"),
    ],
)
def test_colour_by_share_against_warn_at(used: float, colour: str) -> None:
    assert badge.colour(used, 100.0, 0.8) == colour


def test_a_zero_allocation_is_green_until_used() -> None:
    assert badge.colour(0.0, 0.0, 0.8) == "green"
    assert badge.colour(0.001, 0.0, 0.8) == "red"


def test_the_endpoint_document_is_shields_schema() -> None:
    assert badge.endpoint("training", 12.3, 100.0, 0.8) == {
        "schemaVersion": 1,
        "label": "CO2e training",
        "message": "12.3 kg / 100 kg",
        "color": "green",
    }


def test_files_cover_every_allocated_category() -> None:
    files = badge.files(
        [entry("1", 30.0), entry("2", 55.0), entry("3", 45.0, "inference"), entry("4", 9, "other")],
        ALLOCATIONS,
        0.8,
    )
    assert set(files) == {"badges/training.json", "badges/inference.json"}
    training = json.loads(files["badges/training.json"])
    assert training["message"] == "85 kg / 100 kg" and training["color"] == "yellow"
    inference = json.loads(files["badges/inference.json"])
    assert inference["message"] == "45 kg / 50 kg" and inference["color"] == "yellow"


# -- the branch ledger: one commit holds both --------------------------------------------------


def test_the_entry_and_the_badges_are_one_commit(fake_github: FakeGitHub) -> None:
    book = ledger(fake_github)
    assert book.append(entry("1", 30.0)) is True  # a plain append: no badges
    before = fake_github.branch_commits(REPO, BRANCH)
    assert book.append_with(entry("2", 55.0), beside()) is True
    after = fake_github.branch_commits(REPO, BRANCH)
    assert len(after) == len(before) + 1  # one commit
    head = after[0]
    assert head["parents"] == [before[0]["sha"]]
    shard = tree_text(fake_github, head["sha"], SHARD) or ""
    assert [e["run_id"] for e in parse_shard(shard, "s")] == ["1", "2"]
    training = json.loads(tree_text(fake_github, head["sha"], "badges/training.json") or "")
    assert training == {
        "schemaVersion": 1,
        "label": "CO2e training",
        "message": "85 kg / 100 kg",
        "color": "yellow",
    }
    inference = json.loads(tree_text(fake_github, head["sha"], "badges/inference.json") or "")
    assert inference["message"] == "0 kg / 50 kg" and inference["color"] == "green"
    assert tree_text(fake_github, head["sha"], "README.md")  # the rest of the tree is kept
    assert head["message"] == f"co2gate: record {entry('2', 0)['key']}"
    assert book.entries(*YEAR)[-1]["run_id"] == "2"  # reads see the new shard


def test_an_entry_already_there_writes_nothing(fake_github: FakeGitHub) -> None:
    book = ledger(fake_github)
    assert book.append_with(entry("1", 30.0), beside()) is True
    commits = len(fake_github.branch_commits(REPO, BRANCH))
    assert book.append_with(entry("1", 30.0), beside()) is False
    assert len(fake_github.branch_commits(REPO, BRANCH)) == commits


def test_the_badge_counts_the_whole_budget_year(fake_github: FakeGitHub) -> None:
    book = ledger(fake_github)
    book.append(entry("jan", 20.0, day="2026-01-15"))
    book.append(entry("old", 500.0, day="2025-12-31"))  # the year before: not counted
    book.append_with(entry("mar", 70.0), beside())
    text = fake_github.file_text(REPO, BRANCH, "badges/training.json") or ""
    assert json.loads(text)["message"] == "90 kg / 100 kg"
    book.append_with(entry("mar2", 11.0), beside())
    text = fake_github.file_text(REPO, BRANCH, "badges/training.json") or ""
    assert json.loads(text) == json.loads(text) | {"message": "101 kg / 100 kg", "color": "red"}


def test_a_concurrent_append_makes_the_swap_retry_and_the_badge_holds_both(
    fake_github: FakeGitHub,
) -> None:
    first, second = ledger(fake_github), ledger(fake_github)
    first.append_with(entry("0", 10.0), beside())
    # The second job's tree is answered late; the first job commits in the meantime, so the
    # second's ref update is no fast-forward (422) and it retries on fresh data.
    fake_github.inject("POST", r"/git/trees$", status=None, delay_s=1.0)
    done: list[bool] = []
    racer = threading.Thread(
        target=lambda: done.append(second.append_with(entry("B", 25.0), beside()))
    )
    racer.start()
    deadline = time.monotonic() + 10
    while not any(p.endswith("/git/trees") for _, p in fake_github.log[-3:]):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert first.append_with(entry("A", 40.0), beside()) is True
    racer.join(timeout=30)
    assert done == [True]
    assert fake_github.statuses["PATCH", 422] == 1  # the stale swap was refused once
    shard = parse_shard(fake_github.file_text(REPO, BRANCH, SHARD) or "", "s")
    assert sorted(e["run_id"] for e in shard) == ["0", "A", "B"]
    text = fake_github.file_text(REPO, BRANCH, "badges/training.json") or ""
    assert json.loads(text)["message"] == "75 kg / 100 kg"  # 10 + 40 + 25
    # Every commit's badge agrees with the shard in the same tree: never one without the other.
    for commit in fake_github.branch_commits(REPO, BRANCH):
        badge_text = tree_text(fake_github, commit["sha"], "badges/training.json")
        if badge_text is None:
            continue
        rows = parse_shard(tree_text(fake_github, commit["sha"], SHARD) or "", "s")
        total = sum(e["emissions_kg"] for e in rows)
        assert json.loads(badge_text)["message"] == f"{total:g} kg / 100 kg"


def test_a_swap_applied_but_answered_502_is_not_doubled(fake_github: FakeGitHub) -> None:
    book = ledger(fake_github)
    book.append_with(entry("0", 10.0), beside())
    fake_github.inject("PATCH", r"/git/refs/", status=502, apply=True)
    assert book.append_with(entry("1", 20.0), beside()) is True  # it may be ours: it is
    shard = parse_shard(fake_github.file_text(REPO, BRANCH, SHARD) or "", "s")
    assert [e["run_id"] for e in shard] == ["0", "1"]
    text = fake_github.file_text(REPO, BRANCH, "badges/training.json") or ""
    assert json.loads(text)["message"] == "30 kg / 100 kg"


def test_a_read_only_token_is_ledger_read_only(fake_github: FakeGitHub) -> None:
    ledger(fake_github).append(entry("0", 1.0))  # the branch exists
    with pytest.raises(LedgerReadOnly, match="cannot write"):
        ledger(fake_github, fake_github.read_token).append_with(entry("1", 1.0), beside())
    assert fake_github.file_text(REPO, BRANCH, "badges/training.json") is None


def test_a_first_append_creates_the_branch_with_its_badges(fake_github: FakeGitHub) -> None:
    assert ledger(fake_github).append_with(entry("1", 1.0), beside()) is True
    files = fake_github.branch_files(REPO, BRANCH)
    assert {"README.md", SHARD, "badges/training.json", "badges/inference.json"} <= set(files)


def test_an_append_with_badges_is_a_handful_of_requests(fake_github: FakeGitHub) -> None:
    book = ledger(fake_github)
    book.append(entry("0", 1.0))
    fake_github.clear_log()
    book.append_with(entry("1", 1.0), beside())
    assert [m for m, _ in fake_github.log] == ["GET", "POST", "GET", "POST", "POST", "PATCH"]


# -- the file ledger and the rest --------------------------------------------------------------


def test_the_file_ledger_writes_badges_beside_it(tmp_path: Path) -> None:
    root = tmp_path / "ledger"
    book = FileLedger(root)
    assert book.append_with(entry("1", 30.0), beside()) is True
    assert book.append_with(entry("2", 55.0), beside()) is True
    doc = json.loads((root / "badges" / "training.json").read_text())
    assert doc["message"] == "85 kg / 100 kg" and doc["color"] == "yellow"
    assert json.loads((root / "badges" / "inference.json").read_text())["color"] == "green"
    assert len(book.entries(*YEAR)) == 2  # the badges are no shards
    assert not list(root.rglob("*.tmp"))


def test_ledgers_without_badges_record_the_entry_alone(tmp_path: Path) -> None:
    assert NoneLedger().append_with(entry("1", 1.0), beside()) is False


def record(kg: float, run_id: str) -> Measurement:
    kwh = kg / 0.4
    return Measurement.from_json(
        {
            "schema": "co2gate/emissions/v1",
            "run": {
                "id": run_id,
                "label": "train",
                "workload": "training",
                "command": ["python", "train.py"],
                "exit_code": 0,
                "started_at": "2026-03-10T09:00:00.000+00:00",
                "ended_at": "2026-03-10T10:00:00.000+00:00",
                "duration_s": 3600.0,
                "stopped_by_guard": False,
            },
            "energy_kwh": {"cpu": kwh, "gpu": 0.0, "ram": 0.0, "total": kwh},
            "power_w": {"cpu": 1.0, "gpu": 0.0, "ram": 0.0},
            "methods": {"cpu": "rapl", "gpu": "none", "ram": "none"},
            "pue": 1.0,
            "intensity_g_per_kwh": 400.0,
            "intensity_source": "a test",
            "emissions_kg": kg,
            "gpus": [],
            "requests": None,
            "per_request_g": None,
            "ci": None,
        },
        "e.json",
    )


def test_a_gated_run_writes_the_badges_with_its_entry(fake_github: FakeGitHub) -> None:
    b = budgets.parse(
        "version: 1\nannual_budget_kg: 200\nallocations: {training: 0.5, inference: 0.25}\n"
        "warn_at: 0.5\n",
        "budget.yml",
    )
    book = ledger(fake_github)
    gated = gate.gate(record(60.0, "r1"), b, book, record=True)
    assert gated.recorded
    head = fake_github.branch_commits(REPO, BRANCH)[0]
    assert tree_text(fake_github, head["sha"], "2026/03.jsonl")
    doc = json.loads(tree_text(fake_github, head["sha"], "badges/training.json") or "")
    assert doc == {
        "schemaVersion": 1,
        "label": "CO2e training",
        "message": "60 kg / 100 kg",
        "color": "yellow",  # 60% against warn_at 0.5
    }
    assert (
        json.loads(tree_text(fake_github, head["sha"], "badges/inference.json") or "")["message"]
        == "0 kg / 50 kg"
    )
