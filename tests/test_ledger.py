"""The ledger: FileLedger on disk, BranchLedger through real PyGithub against the fake GitHub."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fakegithub import FakeGitHub
from github import Auth, Github

from co2gate.ledger import LedgerError, LedgerReadOnly, entry_key, make_entry, shard_of, summarize
from co2gate.ledger.branch import README, BranchLedger
from co2gate.ledger.file import FileLedger
from co2gate.ledger.interface import shards_between, to_line, utc_day
from co2gate.ledger.none import NoneLedger
from co2gate.model import Measurement

REPO = "octo/lab"
BRANCH = "co2gate-ledger"
YEAR_2025 = (date(2025, 1, 1), date(2026, 1, 1))


def entry(
    run: int | str, ended_at: str = "2025-03-04T10:00:00.000+00:00", **extra: Any
) -> dict[str, Any]:
    """A ledger entry as make_entry builds it, for run `run`."""
    base: dict[str, Any] = {
        "repository": REPO,
        "run_id": str(run),
        "run_attempt": "1",
        "job": "train",
        "label": "train",
        "category": "training",
        "emissions_kg": 0.25,
        "energy_kwh": 1.0,
        "duration_s": 60.0,
        "ended_at": ended_at,
        "sha": "abc123",
        "ref": "refs/heads/main",
        "event": "push",
        "pr": None,
    }
    base |= extra
    return {"key": entry_key(base)} | base


def branch_ledger(fake: FakeGitHub, **kw: Any) -> tuple[BranchLedger, list[float]]:
    """A BranchLedger on the fake, with backoff sleeps recorded instead of slept."""
    sleeps: list[float] = []
    options: dict[str, Any] = {"api_url": fake.api_url, "sleep": sleeps.append, "rng": lambda: 0.5}
    token = kw.pop("token", fake.token)
    return BranchLedger(REPO, token, **(options | kw)), sleeps


# -- entries, keys, shards ---------------------------------------------------------------------


def test_key_and_shard_follow_the_contract() -> None:
    e = entry(42, ended_at="2025-01-31T23:30:00-02:00")  # 01:30 UTC on 1 February
    assert entry_key(e) == "octo/lab/42/1/train/train"
    assert shard_of(e) == "2025/02.jsonl"
    assert utc_day("2025-12-31T23:59:59.999+00:00") == "2025-12-31"
    assert shards_between(date(2024, 12, 15), date(2025, 2, 1)) == [
        "2024/12.jsonl",
        "2025/01.jsonl",
    ]
    assert shards_between(date(2025, 4, 1), date(2026, 4, 1))[-1] == "2026/03.jsonl"
    assert len(shards_between(date(2025, 4, 15), date(2026, 4, 15))) == 13
    assert shards_between(date(2025, 1, 1), date(2025, 1, 1)) == []
    with pytest.raises(LedgerError, match="ended_at"):
        shard_of({"ended_at": "yesterday"})


def emissions_doc(ci: dict[str, Any] | None) -> dict[str, Any]:
    """An emissions.json document the way co2gate.emissions.build() writes one."""
    return {
        "schema": "co2gate/emissions/v1",
        "run": {
            "id": "6f1c1c3e-4a57-4d0e-9a57-0c1f6f0b2a11",
            "label": "train-resnet",
            "workload": "training",
            "command": ["python", "train.py", "--epochs", "3"],
            "exit_code": 0,
            "signal": None,
            "forwarded_signals": [],
            "started_at": "2025-06-02T08:00:00.000+00:00",
            "ended_at": "2025-06-02T08:01:01.200+00:00",
            "duration_s": 61.2,
            "cpu_s": 58.0,
            "stopped_by_guard": False,
        },
        "energy_kwh": {"cpu": 0.0011, "gpu": 0.0302, "ram": 0.0003, "total": 0.0316},
        "power_w": {"cpu": 64.1, "gpu": 1776.0, "ram": 17.6},
        "methods": {"cpu": "rapl", "gpu": "nvml-energy-counter", "ram": "ram-size-estimate"},
        "pue": 1.1,
        "intensity_g_per_kwh": 244.8,
        "intensity_source": "codecarbon 3.3.2: USA/virginia",
        "emissions_kg": 0.0316 * 1.1 * 244.8 / 1000,
        "gpus": [],
        "requests": None,
        "per_request_g": None,
        "host": {"co2gate_version": "0.1.0"},
        "notes": ["a note that must not reach the ledger"],
        "ci": ci,
    }


def test_make_entry_from_a_ci_run() -> None:
    ci = {
        "provider": "github",
        "repository": "octo/lab",
        "sha": "d6cd1e2bd19e03a81132a23b2025920577f84e37",
        "ref": "refs/pull/12/merge",
        "head_ref": "feature",
        "base_ref": "main",
        "event": "pull_request",
        "pr": 12,
        "workflow": "train",
        "job": "train",
        "run_id": "9876543210",
        "run_attempt": "2",
        "server_url": "https://github.com",
    }
    e = make_entry(Measurement.from_json(emissions_doc(ci), "t"), "training")
    assert e["key"] == "octo/lab/9876543210/2/train/train-resnet"
    assert e["category"] == "training"
    assert e["emissions_kg"] == pytest.approx(0.0316 * 1.1 * 244.8 / 1000)
    assert e["energy_kwh"] == 0.0316
    assert (e["sha"], e["ref"], e["event"], e["pr"]) == (ci["sha"], ci["ref"], "pull_request", 12)
    assert e["ended_at"] == "2025-06-02T08:01:01.200+00:00"
    line = to_line(e)
    assert "train.py" not in line and "note" not in line  # small: no command, no notes
    # small: its provenance for the annual report (energy per method, PUE, intensity source,
    # embodied kg) adds about 170 characters
    assert len(line) < 560 and line.endswith("}\n") and line.count("\n") == 1


def test_make_entry_outside_ci() -> None:
    doc = emissions_doc(None)
    doc["run"]["ended_at"] = "2025-07-01T01:30:00.000+02:00"
    e = make_entry(Measurement.from_json(doc, "t"), "training")
    assert e["ended_at"] == "2025-06-30T23:30:00.000+00:00" and shard_of(e) == "2025/06.jsonl"
    assert (e["repository"], e["run_attempt"], e["job"]) == ("local", "1", "local")
    assert e["run_id"] == "6f1c1c3e-4a57-4d0e-9a57-0c1f6f0b2a11"
    assert e["key"] == "local/6f1c1c3e-4a57-4d0e-9a57-0c1f6f0b2a11/1/local/train-resnet"
    assert e["sha"] is None and e["pr"] is None


def test_summarize_totals_by_category_month_and_label() -> None:
    rows = [
        entry(1, "2025-01-10T00:00:00+00:00", emissions_kg=1.5, energy_kwh=6.0, label="a"),
        entry(2, "2025-01-20T00:00:00+00:00", emissions_kg=2.0, energy_kwh=8.0, label="b"),
        entry(3, "2025-02-01T00:00:00+00:00", emissions_kg=0.5, energy_kwh=2.0, label="a"),
        entry(4, "2025-02-03T00:00:00+00:00", emissions_kg=4.0, energy_kwh=9.0, label="serve")
        | {"category": "inference"},
    ]
    s = summarize(rows, top=2)
    assert s["count"] == 4
    assert s["emissions_kg"] == pytest.approx(1.5 + 2.0 + 0.5 + 4.0)
    assert s["energy_kwh"] == pytest.approx(6.0 + 8.0 + 2.0 + 9.0)
    assert s["by_category"] == {
        "inference": {"count": 1, "emissions_kg": 4.0, "energy_kwh": 9.0},
        "training": {"count": 3, "emissions_kg": pytest.approx(4.0), "energy_kwh": 16.0},
    }
    assert list(s["by_month"]) == ["2025-01", "2025-02"]
    assert s["by_month"]["2025-01"]["emissions_kg"] == pytest.approx(3.5)
    assert s["by_month"]["2025-02"]["emissions_kg"] == pytest.approx(4.5)
    assert s["by_label"]["a"] == {"count": 2, "emissions_kg": 2.0, "energy_kwh": 8.0}
    assert [r["run_id"] for r in s["top_runs"]] == ["4", "2"]
    assert summarize([])["count"] == 0


def test_none_ledger_records_nothing() -> None:
    ledger = NoneLedger()
    assert ledger.append(entry(1)) is False
    assert ledger.entries(*YEAR_2025) == []


# -- FileLedger ------------------------------------------------------------------------------


def test_file_round_trip_sharded_by_month(tmp_path: Path) -> None:
    ledger = FileLedger(tmp_path)
    dates = ["2024-12-31T23:00:00+00:00", "2025-01-05T00:00:00+00:00", "2025-02-28T12:00:00+00:00"]
    rows = [entry(i, d) for i, d in enumerate(dates)]
    assert [ledger.append(r) for r in rows] == [True, True, True]
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.jsonl")) == [
        "2024/12.jsonl",
        "2025/01.jsonl",
        "2025/02.jsonl",
    ]
    assert ledger.entries(*YEAR_2025) == rows[1:]
    assert ledger.entries(date(2025, 1, 6), date(2025, 2, 28)) == []  # [start, end) by day
    text = (tmp_path / "2025/01.jsonl").read_text()
    assert text.endswith("\n") and text.count("\n") == 1
    assert FileLedger(tmp_path / "missing").entries(*YEAR_2025) == []


def test_file_dedupes_by_key(tmp_path: Path) -> None:
    ledger = FileLedger(tmp_path)
    assert ledger.append(entry(1)) is True
    assert ledger.append(entry(1, emissions_kg=9.0)) is False
    assert FileLedger(tmp_path).append(entry(1)) is False
    assert len(ledger.entries(*YEAR_2025)) == 1


def test_file_torn_last_line_is_skipped_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = FileLedger(tmp_path)
    ledger.append(entry(1))
    shard = tmp_path / "2025/03.jsonl"
    with shard.open("a") as f:
        f.write('{"key":"octo/lab/2/1/train/train","repository":"oc')  # a crash mid-write
    caplog.set_level(logging.WARNING, logger="co2gate")
    assert [e["run_id"] for e in ledger.entries(*YEAR_2025)] == ["1"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert str(shard) in warnings[0].getMessage() and "line 2" in warnings[0].getMessage()

    caplog.clear()
    assert ledger.append(entry(2)) is True  # the torn key was never recorded
    assert [e["run_id"] for e in ledger.entries(*YEAR_2025)] == ["1", "2"]
    assert len(caplog.records) == 1  # still the one torn line, and only one warning
    assert shard.read_text().endswith("}\n")


FILE_CHILD = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    from co2gate.ledger.file import FileLedger
    ledger = FileLedger(Path(sys.argv[1]))
    rows = json.load(sys.stdin)
    while not os.path.exists(sys.argv[2]):  # start together
        time.sleep(0.002)
    print(json.dumps([ledger.append(e) for e in rows]))
    """
)


def test_file_concurrent_processes_never_interleave_or_double(tmp_path: Path) -> None:
    """8 processes x 10 runs of their own, each also racing the others on 10 shared runs.

    The shard starts with 2,000 entries so that each re-read under the lock takes a while:
    without the lock, runs are doubled every time.
    """
    go, shard = tmp_path / "go", tmp_path / "ledger/2025/03.jsonl"
    shard.parent.mkdir(parents=True)
    shard.write_text("".join(to_line(entry(f"old-{n}")) for n in range(2000)))
    children = []
    for worker in range(8):
        rows = [e for n in range(10) for e in (entry(f"{worker}-{n}"), entry(f"shared-{n}"))]
        child = subprocess.Popen(
            [sys.executable, "-c", FILE_CHILD, str(tmp_path / "ledger"), str(go)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdin is not None
        child.stdin.write(json.dumps(rows))
        child.stdin.close()
        children.append(child)
    go.touch()
    results = []
    for child in children:
        assert child.stdout is not None
        results.append(json.loads(child.stdout.read()))
        assert child.wait(timeout=60) == 0
    assert all(r[0::2] == [True] * 10 for r in results)  # every run of its own: added
    assert sum(sum(r[1::2]) for r in results) == 10  # each shared run: added once, by one
    lines = shard.read_text().splitlines()[2000:]
    assert len(lines) == 90 and len({json.loads(line)["key"] for line in lines}) == 90
    found = FileLedger(tmp_path / "ledger").entries(*YEAR_2025)
    assert len(found) == 2090
    assert len([e for e in found if e["run_id"][0].isdigit()]) == 80


# -- BranchLedger ----------------------------------------------------------------------------


def test_branch_is_created_as_an_orphan(fake_github: FakeGitHub) -> None:
    ledger, _ = branch_ledger(fake_github)
    assert ledger.entries(*YEAR_2025) == []  # no branch yet: nothing, and nothing created
    assert fake_github.branch_commits(REPO, BRANCH) == []
    assert ledger.append(entry(1)) is True
    commits = fake_github.branch_commits(REPO, BRANCH)
    assert len(commits) == 2
    gh = Github(
        base_url=fake_github.api_url,
        auth=Auth.Token(fake_github.token),
        retry=None,
        seconds_between_requests=None,
        seconds_between_writes=None,
    )
    first = gh.get_repo(REPO).get_git_commit(commits[-1]["sha"])
    assert first.parents == []  # an orphan: no history shared with the code
    assert fake_github.file_text(REPO, BRANCH, "README.md") == README
    assert fake_github.file_text(REPO, "main", "2025/03.jsonl") is None


def test_branch_creation_race_is_fine(fake_github: FakeGitHub) -> None:
    first, _ = branch_ledger(fake_github)
    first.append(entry(1))
    # The second job looked before the first created the branch: its create gets 422.
    fake_github.inject("GET", r"/git/refs?/heads/", 404)
    second, _ = branch_ledger(fake_github)
    assert second.append(entry(2)) is True
    assert fake_github.count("POST", r"/git/refs$") == 2
    roots = [c for c in fake_github.branch_commits(REPO, BRANCH) if not c["parents"]]
    assert len(roots) == 1
    assert [e["run_id"] for e in second.entries(*YEAR_2025)] == ["1", "2"]


def test_branch_append_entries_and_dedupe(fake_github: FakeGitHub) -> None:
    ledger, _ = branch_ledger(fake_github)
    rows = [
        entry(1, "2025-01-15T00:00:00+00:00"),
        entry(2, "2025-03-04T10:00:00+00:00"),
        entry(3, "2025-03-05T10:00:00+00:00"),
        entry(4, "2026-01-01T00:00:00+00:00"),
    ]
    assert [ledger.append(r) for r in rows] == [True] * 4
    assert ledger.entries(*YEAR_2025) == rows[:3]
    assert ledger.append(rows[1]) is False
    fresh, _ = branch_ledger(fake_github)
    assert fresh.append(rows[2]) is False
    assert fresh.entries(*YEAR_2025) == rows[:3]
    assert fake_github.file_text(REPO, BRANCH, "2025/03.jsonl").count("\n") == 2  # type: ignore[union-attr]


def test_branch_torn_lines_are_skipped_with_one_warning(
    fake_github: FakeGitHub, caplog: pytest.LogCaptureFixture
) -> None:
    ledger, _ = branch_ledger(fake_github)
    ledger.append(entry(1))
    text = fake_github.file_text(REPO, BRANCH, "2025/03.jsonl") or ""
    fake_github.put_file(REPO, BRANCH, "2025/03.jsonl", text + "not json\n" + '{"key": "x"')
    caplog.set_level(logging.WARNING, logger="co2gate")
    assert [e["run_id"] for e in ledger.entries(*YEAR_2025)] == ["1"]
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert f"{REPO}@{BRANCH}:2025/03.jsonl" in message
    assert (
        "skipped 2 invalid ledger line(s): line 2 (not JSON: Expecting value (column 1)), line 3"
        in message
    )
    assert ledger.append(entry(2)) is True
    assert [e["run_id"] for e in ledger.entries(*YEAR_2025)] == ["1", "2"]


def test_a_deleted_branch_is_created_again(fake_github: FakeGitHub) -> None:
    ledger, _ = branch_ledger(fake_github)
    ledger.append(entry(1))
    fake_github.delete_branch(REPO, BRANCH)
    assert ledger.append(entry(2)) is True  # its cached shard meets "Branch not found"
    assert [e["run_id"] for e in ledger.entries(*YEAR_2025)] == ["2"]


def test_stale_and_racing_writes_are_retried(fake_github: FakeGitHub) -> None:
    a, a_sleeps = branch_ledger(fake_github)
    b, _ = branch_ledger(fake_github)
    a.append(entry(1))
    b.append(entry(2))  # a's idea of the shard is now stale: a real 409
    assert a.append(entry(3)) is True
    assert len(a_sleeps) == 1
    # A racing create: told the shard is missing, c PUTs without a sha and gets a real 422.
    c, _ = branch_ledger(fake_github)
    b.append(entry(4, "2025-04-01T00:00:00+00:00"))
    fake_github.inject("GET", r"/contents/2025/04\.jsonl", 404)
    assert c.append(entry(5, "2025-04-02T00:00:00+00:00")) is True
    fake_github.inject("PUT", r"/contents/", 409)
    fake_github.inject("PUT", r"/contents/", 422, body={"message": "does not match abc"})
    d, d_sleeps = branch_ledger(fake_github)
    assert d.append(entry(6)) is True
    assert d_sleeps == [0.2 * 0.75, 0.4 * 0.75]  # exponential, jittered by rng()
    assert sorted(e["run_id"] for e in d.entries(*YEAR_2025)) == ["1", "2", "3", "4", "5", "6"]


def test_server_errors_and_timeouts_are_retried(fake_github: FakeGitHub) -> None:
    fake_github.inject("POST", r"/graphql$", 502)
    fake_github.inject("GET", r"/contents/", 503, times=2)  # the client retries a read once
    fake_github.inject("PUT", r"/contents/", 502)
    ledger, sleeps = branch_ledger(fake_github)
    assert ledger.entries(*YEAR_2025) == []
    assert ledger.append(entry(1)) is True
    assert len(sleeps) == 3  # the ledger's own retries: the GraphQL read, the GET, the PUT
    assert fake_github.count("GET", r"/contents/") == 4  # 503, 503, then one per attempt
    assert fake_github.count("PUT", r"/contents/") == 2  # never repeated by the client
    slow = Github(
        base_url=fake_github.api_url,
        auth=Auth.Token(fake_github.token),
        retry=None,
        seconds_between_requests=None,
        seconds_between_writes=None,
        timeout=1,
    )
    fake_github.inject("GET", r"/contents/", None, delay_s=1.5)  # a slow answer
    timed, _ = branch_ledger(fake_github, github=slow)
    assert timed.append(entry(2)) is True
    assert [e["run_id"] for e in timed.entries(*YEAR_2025)] == ["1", "2"]


def test_a_write_applied_but_answered_502_is_not_doubled(fake_github: FakeGitHub) -> None:
    ledger, _ = branch_ledger(fake_github)
    ledger.append(entry(1))
    fake_github.inject("PUT", r"/contents/", 502, apply=True)
    fresh, _ = branch_ledger(fake_github)
    fake_github.clear_log()
    assert fresh.append(entry(2)) is True  # it was applied: ours
    assert fake_github.count("PUT") == 1
    assert [e["run_id"] for e in fresh.entries(*YEAR_2025)] == ["1", "2"]


def test_retries_are_bounded(fake_github: FakeGitHub) -> None:
    fake_github.inject("PUT", r"/contents/", 502, times=3)
    ledger, sleeps = branch_ledger(fake_github, retries=3)
    with pytest.raises(LedgerError, match=r"gave up after 3 attempts.*HTTP 502"):
        ledger.append(entry(1))
    assert len(sleeps) == 2


def test_a_shard_over_1_mb_is_read_through_the_blob_api(fake_github: FakeGitHub) -> None:
    ledger, _ = branch_ledger(fake_github)
    ledger.append(entry(0))
    big = "".join(json.dumps(entry(f"big-{n}")) + "\n" for n in range(4000))
    assert len(big) > 1024 * 1024
    fake_github.put_file(REPO, BRANCH, "2025/03.jsonl", big)
    reader, _ = branch_ledger(fake_github)
    assert len(reader.entries(*YEAR_2025)) == 4000  # GraphQL's text is cut: read as a blob
    writer, _ = branch_ledger(fake_github)
    fake_github.clear_log()
    assert writer.append(entry("big-3999")) is False  # contents without content: the blob
    assert writer.append(entry("new")) is True
    assert fake_github.count("GET", r"/git/blobs/") == 1
    assert len(writer.entries(*YEAR_2025)) == 4001
    assert fake_github.file_text(REPO, BRANCH, "2025/03.jsonl").startswith(big)  # type: ignore[union-attr]


def test_a_read_only_token_raises_ledger_read_only(fake_github: FakeGitHub) -> None:
    reader, _ = branch_ledger(fake_github, token=fake_github.read_token)
    with pytest.raises(LedgerReadOnly) as missing_branch:
        reader.append(entry(1))  # it cannot even create the branch
    writer, _ = branch_ledger(fake_github)
    writer.append(entry(1))
    with pytest.raises(LedgerReadOnly, match="HTTP 403") as existing_branch:
        reader.append(entry(2))
    for error in (missing_branch.value, existing_branch.value):
        assert fake_github.read_token not in str(error)
    assert [e["run_id"] for e in reader.entries(*YEAR_2025)] == ["1"]  # reading still works


def test_the_token_never_appears_in_errors(fake_github: FakeGitHub) -> None:
    token = "ghp_not_known_to_the_server_123456"
    fake_github.inject(
        "POST", r"/graphql$", 502, body={"message": f"upstream failed for {token}"}, times=2
    )
    ledger, _ = branch_ledger(fake_github, token=token, retries=2)
    with pytest.raises(LedgerError) as transient:
        ledger.entries(*YEAR_2025)
    with pytest.raises(LedgerError, match="HTTP 401") as bad:
        ledger.append(entry(1))
    for error in (transient.value, bad.value):
        assert token not in str(error) and not isinstance(error, LedgerReadOnly)
    assert "***" in str(transient.value)


def test_api_url_is_honoured() -> None:
    with FakeGitHub(prefix="/api/v3") as ghes:
        ledger, _ = branch_ledger(ghes)
        assert ledger.append(entry(1)) is True
        assert len(ledger.entries(*YEAR_2025)) == 1
        paths = {path for _, path in ghes.log}
        assert "/api/graphql" in paths
        assert all(p.startswith("/api/") for p in paths)


def test_a_gated_run_makes_few_requests(fake_github: FakeGitHub) -> None:
    setup, _ = branch_ledger(fake_github)
    for month in range(1, 13):
        setup.append(entry(f"m{month}", f"2025-{month:02d}-10T00:00:00+00:00"))
    ledger, _ = branch_ledger(fake_github)
    fake_github.clear_log()
    assert len(ledger.entries(*YEAR_2025)) == 12
    assert ledger.append(entry("new", "2025-12-20T00:00:00+00:00")) is True
    assert fake_github.log == [
        ("POST", "/graphql"),
        ("PUT", f"/repos/{REPO}/contents/2025/12.jsonl"),
    ]


BRANCH_CHILD = textwrap.dedent(
    """
    import json, os, sys, time
    from co2gate.ledger.branch import BranchLedger
    ledger = BranchLedger(
        "octo/lab", sys.argv[2], api_url=sys.argv[1], retries=60, backoff_s=0.02,
        max_backoff_s=0.4,
    )
    rows = json.load(sys.stdin)
    while not os.path.exists(sys.argv[3]):  # start together
        time.sleep(0.002)
    print(json.dumps([ledger.append(e) for e in rows]))
    """
)


@pytest.mark.slow
def test_concurrent_jobs_on_one_branch_lose_and_double_nothing(
    fake_github: FakeGitHub, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    fake_github.inject("PUT", r"/contents/", 409, times=10)
    fake_github.inject("PUT", r"/contents/", 422, times=10)
    fake_github.inject("PUT", r"/contents/", 502, times=5)
    fake_github.inject("PUT", r"/contents/", 502, apply=True, times=5)
    fake_github.inject("GET", r"/contents/", 502, times=5)
    rows = [[entry(f"{job}-{n}") for n in range(5)] for job in range(20)]
    children = []
    for job_rows in rows:
        child = subprocess.Popen(
            [sys.executable, "-c", BRANCH_CHILD, fake_github.api_url, fake_github.token, str(go)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdin is not None
        child.stdin.write(json.dumps(job_rows))
        child.stdin.close()
        children.append(child)
    go.touch()
    for child in children:
        assert child.stdout is not None
        assert json.loads(child.stdout.read()) == [True] * 5
        assert child.wait(timeout=60) == 0
    assert all(rule.times == 0 for rule in fake_github.injected)  # every failure was met
    assert fake_github.statuses["PUT", 409] + fake_github.statuses["PUT", 422] > 0  # real races
    ledger, _ = branch_ledger(fake_github)
    found = ledger.entries(*YEAR_2025)
    assert len(found) == 100
    text = fake_github.file_text(REPO, BRANCH, "2025/03.jsonl") or ""
    assert len(text.splitlines()) == 100  # not doubled on disk either
    assert sorted(e["key"] for e in found) == sorted(e["key"] for r in rows for e in r)
    assert [ledger.append(e) for r in rows for e in r] == [False] * 100
    assert len(ledger.entries(*YEAR_2025)) == 100


# -- invalid lines: skipped with one warning, never summed, never a crash ----------------------

DROP = object()  # the field is left out of the line


def line_with(field: str, raw: Any) -> str:
    """Run 2's line with `field` set to the raw JSON text `raw` (NaN, 1e400: what json.dumps
    would never write), or left out (DROP)."""
    fields = dict(entry(2))
    if raw is DROP:
        del fields[field]
        return json.dumps(fields)
    fields[field] = "@hostile@"
    return json.dumps(fields).replace('"@hostile@"', raw)


NOT_BETWEEN = "is not between 1970-01-01 and 2100-12-31 (UTC)"
TEXT = "is not a non-empty string of at most 512 characters"
HOSTILE = [
    pytest.param(
        line_with("emissions_kg", "null"), "emissions_kg: null is not a number", id="null"
    ),
    pytest.param(
        line_with("emissions_kg", "NaN"),
        "emissions_kg: NaN is not a finite number >= 0",
        id="nan",
    ),
    pytest.param(
        line_with("energy_kwh", "Infinity"),
        "energy_kwh: Infinity is not a finite number >= 0",
        id="infinity",
    ),
    pytest.param(
        line_with("duration_s", "-Infinity"),
        "duration_s: -Infinity is not a finite number >= 0",
        id="minus-infinity",
    ),
    pytest.param(
        line_with("emissions_kg", "1e400"),  # json.loads reads it as inf
        "emissions_kg: Infinity is not a finite number >= 0",
        id="1e400",
    ),
    pytest.param(
        line_with("emissions_kg", "-0.25"),
        "emissions_kg: -0.25 is not a finite number >= 0",
        id="negative",
    ),
    pytest.param(
        line_with("emissions_kg", "2e9"),
        "emissions_kg: 2000000000.0 is over 1e+09, more than any run can use",
        id="over-the-bound",
    ),
    pytest.param(
        line_with("energy_kwh", "9" * 400),  # float() of it is an OverflowError
        "energy_kwh: a 400-digit integer is over 1e+12, more than any run can use",
        id="400-digit-integer",
    ),
    pytest.param(
        line_with("duration_s", "9" * 5000),  # json.loads refuses it (ValueError)
        "not JSON: Exceeds the limit (4300 digits) for integer string conversion: value has "
        "5000 digits",
        id="5000-digit-integer",
    ),
    pytest.param(
        line_with("emissions_kg", "true"), "emissions_kg: true is not a number", id="bool"
    ),
    pytest.param(
        line_with("energy_kwh", '"1.0"'), "energy_kwh: '1.0' is not a number", id="string"
    ),
    pytest.param(line_with("key", DROP), "key: missing", id="no-key"),
    pytest.param(line_with("label", DROP), "label: missing", id="no-label"),
    pytest.param(line_with("category", DROP), "category: missing", id="no-category"),
    pytest.param(line_with("run_id", "42"), f"run_id: 42 {TEXT}", id="integer-run-id"),
    pytest.param(line_with("job", '""'), f"job: '' {TEXT}", id="empty-job"),
    pytest.param(
        line_with("label", json.dumps("x" * 600)),
        f"label: '{'x' * 40}'... (600 characters) {TEXT}",
        id="long-label",
    ),
    pytest.param(
        line_with("ended_at", '"9999-12-31T23:59:59.000+00:00"'),
        f"ended_at: '9999-12-31T23:59:59.000+00:00' {NOT_BETWEEN}",
        id="year-9999",
    ),
    pytest.param(
        line_with("ended_at", '"9999-12-31T23:00:00-05:00"'),  # in UTC: an OverflowError
        f"ended_at: '9999-12-31T23:00:00-05:00' {NOT_BETWEEN}",
        id="year-9999-west-of-utc",
    ),
    pytest.param(
        line_with("ended_at", '"0001-01-01T00:00:00+05:00"'),
        f"ended_at: '0001-01-01T00:00:00+05:00' {NOT_BETWEEN}",
        id="year-1-east-of-utc",
    ),
    pytest.param(
        line_with("ended_at", '"1970-01-01T01:00:00+02:00"'),  # 1969-12-31 in UTC
        f"ended_at: '1970-01-01T01:00:00+02:00' {NOT_BETWEEN}",
        id="1969-in-utc",
    ),
    pytest.param(
        line_with("ended_at", '"2025-13-04T10:00:00+00:00"'),
        "ended_at: '2025-13-04T10:00:00+00:00' is not an ISO 8601 timestamp",
        id="month-13",
    ),
    pytest.param(
        line_with("ended_at", '"2025-03-04T25:00:00+00:00"'),
        "ended_at: '2025-03-04T25:00:00+00:00' is not an ISO 8601 timestamp",
        id="hour-25",
    ),
    pytest.param(
        line_with("ended_at", '"yesterday"'),
        "ended_at: 'yesterday' is not an ISO 8601 timestamp",
        id="not-a-timestamp",
    ),
    pytest.param(
        line_with("ended_at", "1741082400"),
        "ended_at: 1741082400 is not an ISO 8601 timestamp",
        id="epoch-seconds",
    ),
    pytest.param(line_with("ended_at", DROP), "ended_at: missing", id="no-ended-at"),
    pytest.param(line_with("pr", "0"), "pr: 0 is not null or a positive integer", id="pr-0"),
    pytest.param(
        line_with("pr", "true"), "pr: true is not null or a positive integer", id="pr-bool"
    ),
    pytest.param(
        line_with("pr", "12.0"), "pr: 12.0 is not null or a positive integer", id="pr-float"
    ),
    pytest.param(line_with("sha", "5"), "sha: 5 is not null or a string", id="sha-number"),
    pytest.param(line_with("ref", "[]"), "ref: an array is not null or a string", id="ref-array"),
    pytest.param(
        line_with("event", "{}"), "event: an object is not null or a string", id="event-object"
    ),
    pytest.param(
        line_with("label", '"\\ud800"'),  # a lone surrogate: no UTF-8 can write it out
        "a string holds a lone surrogate: it is not Unicode text",
        id="lone-surrogate",
    ),
    pytest.param("[1, 2]", "an array is not a JSON object", id="array-line"),
    pytest.param('"text"', "'text' is not a JSON object", id="string-line"),
    pytest.param("null", "null is not a JSON object", id="null-line"),
    pytest.param("[" * 100_000, "not JSON: nested too deeply", id="deep-nesting"),
    pytest.param(
        '{"key": "octo/lab/2', "not JSON: Unterminated string starting at (column 9)", id="torn"
    ),
]


def shard_around(line: str) -> str:
    """A shard holding a valid run 1, the given line, and a valid run 3."""
    return to_line(entry(1)) + line + "\n" + to_line(entry(3))


def assert_skipped_once(
    found: list[dict[str, Any]], caplog: pytest.LogCaptureFixture, source: str, problem: str
) -> None:
    assert found == [entry(1), entry(3)]  # the valid lines around it, as they were written
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [f"{source}: skipped 1 invalid ledger line(s): line 2 ({problem})"]


@pytest.mark.parametrize(("line", "problem"), HOSTILE)
def test_file_skips_a_hostile_line_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, line: str, problem: str
) -> None:
    shard = tmp_path / "2025/03.jsonl"
    shard.parent.mkdir(parents=True)
    shard.write_text(shard_around(line), encoding="utf-8")
    caplog.set_level(logging.WARNING, logger="co2gate")
    found = FileLedger(tmp_path).entries(*YEAR_2025)
    assert_skipped_once(found, caplog, str(shard), problem)
    summary = summarize(found)  # what `budget` and `check` compute from it
    assert (summary["count"], summary["emissions_kg"]) == (2, 0.5)


@pytest.fixture(scope="module")
def ledger_branch() -> Any:
    """One fake GitHub for the hostile-line tests, its ledger branch created by a first run."""
    with FakeGitHub() as fake:
        BranchLedger(REPO, fake.token, api_url=fake.api_url).append(entry(0, "2025-02-01T00:00Z"))
        yield fake


@pytest.mark.parametrize(("line", "problem"), HOSTILE)
def test_branch_skips_a_hostile_line_with_one_warning(
    ledger_branch: FakeGitHub, caplog: pytest.LogCaptureFixture, line: str, problem: str
) -> None:
    ledger_branch.put_file(REPO, BRANCH, "2025/03.jsonl", shard_around(line))
    reader = BranchLedger(REPO, ledger_branch.token, api_url=ledger_branch.api_url)
    caplog.set_level(logging.WARNING, logger="co2gate")
    found = reader.entries(date(2025, 3, 1), date(2025, 4, 1))
    assert_skipped_once(found, caplog, f"{REPO}@{BRANCH}:2025/03.jsonl", problem)
    assert summarize(found)["emissions_kg"] == 0.5


def test_one_warning_per_shard_lists_the_lines(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = [to_line(entry(n)) for n in range(3)]
    bad = [line_with("emissions_kg", "NaN") + "\n"] + [line_with("pr", "0") + "\n"] * 11
    # blank lines first and between: the line numbers are still the file's own
    text = "\n\n" + good[0] + bad[0] + "\n" + good[1] + "".join(bad[1:]) + good[2]
    (tmp_path / "2025").mkdir()
    (tmp_path / "2025/03.jsonl").write_text(text)
    (tmp_path / "2025/04.jsonl").write_text(line_with("sha", "5").replace("03-04", "04-04"))
    caplog.set_level(logging.WARNING, logger="co2gate")
    found = FileLedger(tmp_path).entries(*YEAR_2025)
    assert [e["run_id"] for e in found] == ["0", "1", "2"]
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path}/2025/03.jsonl: skipped 12 invalid ledger line(s): line 4 (emissions_kg: "
        "NaN is not a finite number >= 0), line 7, line 8, line 9, line 10, line 11, line 12, "
        "line 13, line 14, line 15, ...",
        f"{tmp_path}/2025/04.jsonl: skipped 1 invalid ledger line(s): line 1 (sha: 5 is not "
        "null or a string)",
    ]


def test_older_lines_are_read_with_their_numbers_as_floats(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Lines without duration_s (or null), integer figures, other time zones, no optional
    fields, a key not made of its fields: valid, and normalised."""
    old = {
        "key": "octo/lab/7",
        "repository": "octo/lab",
        "run_id": "7",
        "run_attempt": "1",
        "job": "j",
        "label": "train \U0001f680",  # written by json.dumps as a surrogate pair: fine
        "category": "",
        "emissions_kg": 2,
        "energy_kwh": 0,
        "ended_at": "2025-03-01T01:30:00+02:00",  # 28 February in UTC
    }
    lines = [
        old,
        old | {"key": "k8", "duration_s": None, "ended_at": "2025-02-10T10:00:00Z"},
        old | {"key": "k9", "duration_s": 1, "ended_at": "2025-02-11T10:00:00", "pr": 3},
    ]
    (tmp_path / "2025").mkdir()
    (tmp_path / "2025/02.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines[1:]))
    (tmp_path / "2025/03.jsonl").write_text(json.dumps(old) + "\n")
    caplog.set_level(logging.WARNING, logger="co2gate")
    found = FileLedger(tmp_path).entries(date(2025, 2, 1), date(2025, 3, 2))
    assert caplog.records == []
    assert [e["key"] for e in found] == ["k8", "k9", "octo/lab/7"]
    for e in found:
        assert all(type(e[k]) is float for k in ("emissions_kg", "energy_kwh", "duration_s"))
        assert (e["sha"], e["ref"], e["event"]) == (None, None, None)
        assert e["label"] == "train \U0001f680"
    assert [(e["duration_s"], e["pr"]) for e in found] == [(0.0, None), (1.0, 3), (0.0, None)]
    assert [e["ended_at"] for e in found] == [
        "2025-02-10T10:00:00Z",
        "2025-02-11T10:00:00.000+00:00",
        "2025-02-28T23:30:00.000+00:00",
    ]


def test_the_fast_path_takes_nothing_the_full_check_refuses() -> None:
    """Random lines mixing valid and hostile fields: what the fast path lets through is
    exactly what the full check accepts, normalised the same way."""
    import random

    from co2gate.ledger.interface import _normalised, _valid_entries

    rng = random.Random(2025)
    pools: dict[str, list[Any]] = {
        "key": ["octo/lab/2/1/train/train", "", "x" * 513, "/a//b/", 7, None],
        "repository": ["octo/lab", "", "/", "a/", 5, None, "x" * 600],
        "run_id": ["2", "", 2, True, "//"],
        "label": ["train", "", "/train", "x" * 513, ["train"]],
        "category": ["training", "", None, 3],
        "emissions_kg": [0.25, 0.0, -0.0, 1e9, 1e9 + 1, 0, 3, -1e-9, True, None, "1", 2**70],
        "energy_kwh": [1.0, 1e12, 1e13, float("nan"), float("inf"), 10**400],
        "duration_s": [60.0, 0, None, -1.0, 1e10, False],
        "ended_at": [
            "2025-03-04T10:00:00.000+00:00",
            "2025-03-04T10:00:00Z",
            "2025-03-04T10:00:00-00:00",
            "2025-03-04T10:00:00+01:00",
            "2025-03-04T10:00:00",
            "2025-03-04 10:00:00+00:00",
            "2025-W10-2T10:00:00+00:00",
            "20250304T100000+00:00",
            "2025-02-30T10:00:00+00:00",
            "2100-12-31T23:59:59+00:00",
            "2101-01-01T00:00:00+00:00",
            "1970-01-01T00:00:00+00:00",
            "2025-03-04",
            "2025-03-04T10:00:00+00:00x",
            5,
            None,
        ],
        "pr": [None, 1, 0, -1, True, 2**53, 2**53 + 1, 1.0, "1"],
        "sha": [None, "", "abc", 5],
        "event": [None, "push", False],
    }
    for _ in range(3000):
        obj = dict(entry(2))
        for name in rng.sample(sorted(pools), rng.randint(1, 3)):
            if rng.random() < 0.1:
                obj.pop(name, None)
            else:
                obj[name] = rng.choice(pools[name])
        text = json.dumps(obj) + "\n"  # NaN and Infinity as Python writes them
        found, bad = _valid_entries(text, "", "~")
        try:
            expected, _ = _normalised(json.loads(text))
        except Exception:
            assert (found, len(bad)) == ([], 1), obj
        else:
            assert (found, bad) == ([expected], []), obj


def test_sums_over_maximal_entries_stay_finite(tmp_path: Path) -> None:
    biggest = entry(0, emissions_kg=1e9, energy_kwh=1e12, duration_s=1e9, pr=2**53)
    (tmp_path / "2025").mkdir()
    with (tmp_path / "2025/03.jsonl").open("w") as f:
        f.writelines(to_line(biggest | {"run_id": str(n), "key": ""}) for n in range(20_000))
        f.write(line_with("emissions_kg", "1.0000001e9") + "\n")  # one over: never summed
        f.write(line_with("energy_kwh", "1e308") + "\n")
    found = FileLedger(tmp_path).entries(*YEAR_2025)
    assert len(found) == 20_000
    summary = summarize(found)
    assert summary["emissions_kg"] == 20_000 * 1e9 and summary["energy_kwh"] == 20_000 * 1e12
    assert sum(e["emissions_kg"] for e in found) == 2e13  # as gate.py and estimate.py sum
    assert summary["by_month"]["2025-03"]["energy_kwh"] == 2e16


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"emissions_kg": float("nan")}, "emissions_kg: NaN is not a finite number >= 0"),
        ({"emissions_kg": float("inf")}, "emissions_kg: Infinity is not a finite number >= 0"),
        ({"emissions_kg": 10**400}, "emissions_kg: a 401-digit integer is over 1e+09"),
        ({"emissions_kg": -1.0}, "emissions_kg: -1.0 is not a finite number >= 0"),
        ({"emissions_kg": True}, "emissions_kg: true is not a number"),
        ({"emissions_kg": None}, "emissions_kg: null is not a number"),
        ({"energy_kwh": "1"}, "energy_kwh: '1' is not a number"),
        ({"duration_s": float("nan")}, "duration_s: NaN is not a finite number >= 0"),
        ({"ended_at": "9999-12-31T23:59:59+00:00"}, NOT_BETWEEN),
        ({"ended_at": "soon"}, "ended_at: 'soon' is not an ISO 8601 timestamp"),
        ({"label": "x" * 513}, f"label: '{'x' * 40}'... (513 characters) {TEXT}"),
        ({"job": ""}, f"job: '' {TEXT}"),
        ({"pr": 0}, "pr: 0 is not null or a positive integer"),
        ({"sha": 5}, "sha: 5 is not null or a string"),
        ({"label": "train\ud800"}, "a string holds a lone surrogate"),
    ],
)
def test_an_invalid_entry_is_never_written(
    tmp_path: Path, fake_github: FakeGitHub, change: dict[str, Any], problem: str
) -> None:
    bad = entry(1) | change
    with pytest.raises(LedgerError, match="is invalid: ") as refused:
        to_line(bad)
    assert problem in str(refused.value) and "\n" not in str(refused.value)
    with pytest.raises(LedgerError, match="is invalid: "):
        FileLedger(tmp_path).append(bad)
    assert list(tmp_path.rglob("*.jsonl")) == []
    with pytest.raises(LedgerError, match="is invalid: "):
        branch_ledger(fake_github)[0].append(bad)
    assert fake_github.count() == 0  # refused before any request


def test_every_measurement_the_model_reads_makes_a_valid_entry() -> None:
    """Bad figures are refused when a file is read (Measurement.from_json): its bounds lie
    within the ledger's, so make_entry never meets a figure a ledger may not hold."""
    doc = emissions_doc(None)
    doc["emissions_kg"], doc["energy_kwh"]["total"] = 1e9, 1e9  # the model's largest
    doc["run"] |= {"duration_s": 1e9, "label": "x" * 200, "ended_at": "2100-12-31T23:59:59Z"}
    e = make_entry(Measurement.from_json(doc, "t"), "training")
    assert (e["emissions_kg"], e["duration_s"], e["ended_at"][:4]) == (1e9, 1e9, "2100")
    assert to_line(e).endswith("}\n")


def test_holds_key_finds_only_the_key_of_a_valid_entry() -> None:
    from co2gate.ledger.interface import holds_key

    key = entry_key(entry(2))
    text = to_line(entry(2, label="train-x")) + to_line(entry(3, ref=key))
    assert not holds_key(text, key)  # a longer key, and the key as another field's value
    assert holds_key(text + to_line(entry(2)), key)
    assert not holds_key(text + line_with("pr", "0"), key)  # run 2's line, but invalid
    assert holds_key(to_line(entry(2, label="trän")), entry_key(entry(2, label="trän")))


def test_an_invalid_line_does_not_stop_its_run_being_recorded(tmp_path: Path) -> None:
    shard = tmp_path / "2025/03.jsonl"
    shard.parent.mkdir(parents=True)
    shard.write_text(line_with("emissions_kg", "NaN") + "\n")  # run 2, never counted
    ledger = FileLedger(tmp_path)
    assert ledger.append(entry(2)) is True
    assert ledger.append(entry(2)) is False
    assert ledger.entries(*YEAR_2025) == [entry(2)]


# -- the factory -------------------------------------------------------------------------------


def actions_env(fake: FakeGitHub, **changes: str) -> dict[str, str]:
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_TOKEN": fake.token,
        "GITHUB_REPOSITORY": REPO,
        "GITHUB_API_URL": fake.api_url,
    }
    return env | changes


def test_open_ledger_picks_what_the_budget_file_asks_for(
    tmp_path: Path, fake_github: FakeGitHub
) -> None:
    from co2gate.budget import LedgerBackend, LedgerConfig
    from co2gate.ledger import open_ledger

    branch = LedgerConfig(branch="carbon", path=str(tmp_path / "ledger"))
    ledger, where = open_ledger(branch, actions_env(fake_github))
    assert isinstance(ledger, BranchLedger) and where == f"ledger: branch carbon of {REPO}"
    assert ledger.append(entry(1)) is True  # at GITHUB_API_URL, on the branch asked for
    assert fake_github.file_text(REPO, "carbon", "2025/03.jsonl") == to_line(entry(1))

    # No token, not in Actions: a laptop records to the file ledger at ledger.path.
    for env in (actions_env(fake_github, GITHUB_TOKEN=""), {"GITHUB_TOKEN": "t"}, {}):
        ledger, where = open_ledger(branch, env)
        assert isinstance(ledger, FileLedger) and where == f"ledger: file {tmp_path}/ledger"
        assert ledger.root == tmp_path / "ledger"
    file = LedgerConfig(backend=LedgerBackend.FILE, path="runs")
    ledger, where = open_ledger(file, actions_env(fake_github))
    assert isinstance(ledger, FileLedger) and where == "ledger: file runs"
    ledger, where = open_ledger(LedgerConfig(backend=LedgerBackend.NONE), actions_env(fake_github))
    assert isinstance(ledger, NoneLedger) and where == "ledger: none"


def test_open_ledger_refuses_a_bad_github_repository_in_one_line(fake_github: FakeGitHub) -> None:
    from co2gate.budget import LedgerConfig
    from co2gate.ledger import open_ledger

    env = actions_env(fake_github, GITHUB_REPOSITORY="bad repo name")
    with pytest.raises(LedgerError) as caught:
        open_ledger(LedgerConfig(), env)
    assert str(caught.value) == (
        "the ledger branch's repository (GITHUB_REPOSITORY) must be OWNER/NAME, not 'bad repo name'"
    )
    assert fake_github.count() == 0


def test_the_ledger_package_imports_light_and_never_the_app() -> None:
    """PyGithub comes only with the branch ledger; nothing above the ledger is imported."""
    script = textwrap.dedent(
        """
        import sys
        from co2gate.budget import LedgerBackend, LedgerConfig
        import co2gate.ledger
        assert "github" not in sys.modules, "PyGithub at import"
        for backend in LedgerBackend:
            env = {"GITHUB_ACTIONS": "true", "GITHUB_TOKEN": "t", "GITHUB_REPOSITORY": "o/r"}
            co2gate.ledger.open_ledger(LedgerConfig(backend=backend), env)
        assert "github" in sys.modules
        above = ("co2gate.app", "co2gate.report", "co2gate.cli", "co2gate.gate")
        print(sorted(m for m in sys.modules if m.startswith(above)))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
