"""What the ledger costs: summarizing a busy year, reading it from disk, and API requests.

(a) A year of 100,000 entries (four categories, 40 labels, 25 repositories' worth of jobs):
    the time summarize() takes over them, and the time FileLedger.entries() takes to read
    them back from disk (median of --runs). Target: under 0.5 s each.
(b) The HTTP requests one gated run makes through BranchLedger against the fake GitHub
    (tests/fakegithub.py): entries() for the budget year plus one append(), counted from the
    server's request log, for a ledger with all twelve months present. Target: at most 8.
    Shown for a typical ledger (shards under GraphQL's text limit) and for the 100,000-entry
    year, whose shards are over 1 MB and are read through the git blob API.

    python benchmarks/ledger.py [--entries 100000] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fakegithub import FakeGitHub

from co2gate import badge
from co2gate.ledger.branch import BranchLedger
from co2gate.ledger.file import FileLedger
from co2gate.ledger.interface import Beside, entry_key, shard_of, summarize, to_line

YEAR = (date(2025, 1, 1), date(2026, 1, 1))
CATEGORIES = {"training": 0.45, "inference": 0.35, "evaluation": 0.15, "fine-tuning": 0.05}
NL = "\n"
EVENTS = ["push", "pull_request", "schedule", "workflow_dispatch"]


def make_year(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """n entries spread over 2025, shaped like make_entry's output."""
    rng = random.Random(seed)
    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    seconds = 365 * 24 * 3600
    labels = [
        f"{verb}-{model}" for verb in ("train", "eval", "serve", "tune") for model in range(10)
    ]
    repos = [f"org/model-{i}" for i in range(25)]
    names, weights = list(CATEGORIES), list(CATEGORIES.values())
    out = []
    for i, offset in enumerate(sorted(rng.randrange(seconds) for _ in range(n))):
        ended = start + timedelta(seconds=offset, milliseconds=rng.randrange(1000))
        energy = rng.lognormvariate(-1.0, 1.5)  # kWh: most runs small, a few large
        pr = rng.randrange(1, 900) if rng.random() < 0.4 else None
        entry: dict[str, Any] = {
            "repository": rng.choice(repos),
            "run_id": str(9_000_000_000 + i),
            "run_attempt": "1" if rng.random() < 0.95 else "2",
            "job": "gate",
            "label": rng.choice(labels),
            "category": rng.choices(names, weights)[0],
            "emissions_kg": energy * 1.1 * rng.uniform(20.0, 700.0) / 1000.0,
            "energy_kwh": energy,
            "duration_s": rng.uniform(30.0, 7200.0),
            "ended_at": ended.isoformat(timespec="milliseconds"),
            "sha": f"{rng.getrandbits(160):040x}",
            "ref": "refs/heads/main" if pr is None else f"refs/pull/{pr}/merge",
            "event": "pull_request" if pr else rng.choice(EVENTS),
            "pr": pr,
        }
        out.append({"key": entry_key(entry)} | entry)
    return out


def median_s(call: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def shards_text(entries: list[dict[str, Any]]) -> dict[str, str]:
    shards: dict[str, list[str]] = defaultdict(list)
    for entry in entries:
        shards[shard_of(entry)].append(to_line(entry))
    return {path: "".join(lines) for path, lines in shards.items()}


def gated_run_requests(entries: list[dict[str, Any]]) -> tuple[list[tuple[str, str]], float]:
    """The requests (and seconds) of what a gated run does on a ledger holding entries: read
    the year (entries), then record its entry with the badges in one commit (append_with)."""
    with FakeGitHub() as fake:
        BranchLedger("octo/lab", fake.token, api_url=fake.api_url).append(entries[0])
        for path, text in shards_text(entries).items():
            fake.put_file("octo/lab", "co2gate-ledger", path, text)
        ledger = BranchLedger("octo/lab", fake.token, api_url=fake.api_url)
        new = dict(entries[-1], run_id="new", key="")
        new["key"] = entry_key(new)
        fake.clear_log()
        t0 = time.perf_counter()
        found = ledger.entries(*YEAR)
        assert len(found) == len(entries), (len(found), len(entries))
        allocations = {name: 1000.0 * share for name, share in CATEGORIES.items()}
        badges = Beside(*YEAR, lambda year: badge.files(year, allocations, 0.8))
        assert ledger.append_with(new, badges) is True
        return list(fake.log), time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    year = make_year(args.entries)
    shards = shards_text(year)
    summary_s = median_s(lambda: summarize(year), args.runs)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for path, text in shards.items():
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_text(text)
        ledger = FileLedger(root)
        assert len(ledger.entries(*YEAR)) == len(year)
        read_s = median_s(lambda: ledger.entries(*YEAR), args.runs)
        texts = [(root / path).read_text() for path in shards]
        floor_s = median_s(
            lambda: [json.loads(f"[{t.strip().replace(NL, ',')}]") for t in texts], args.runs
        )
        size_mb = sum(len(t) for t in shards.values()) / 1e6
        append_s = median_s(
            lambda: ledger.append(dict(year[-1], run_id=str(time.perf_counter_ns()))), args.runs
        )

    print(f"(a) a year of {len(year):,} entries ({size_mb:.1f} MB in 12 shards)")
    print(f"    summarize()              {summary_s * 1000:7.1f} ms   (target < 500 ms)")
    print(f"    FileLedger.entries(year) {read_s * 1000:7.1f} ms   (target < 500 ms)")
    print(f"      of which json.loads alone, the stdlib's floor: {floor_s * 1000:.1f} ms")
    print(
        f"    FileLedger.append() into a {len(shards['2025/12.jsonl']) / 1e6:.1f} MB shard "
        f"{append_s * 1000:5.1f} ms"
    )

    typical = make_year(12 * 150, seed=11)  # 150 gated runs a month
    for name, entries in (
        ("typical year, 150 runs a month", typical),
        ("the 100,000-entry year", year),
    ):
        log, seconds = gated_run_requests(entries)
        largest = max(len(t) for t in shards_text(entries).values()) / 1e6
        print(
            f"(b) one gated run, {name} (largest shard {largest:.2f} MB): "
            f"{len(log)} requests, {seconds * 1000:.0f} ms   (target <= 8)"
        )
        for method, path in log:
            print(f"      {method:4} {path}")


if __name__ == "__main__":
    main()
