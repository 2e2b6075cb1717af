"""Hostile fork artifacts through the real companion entry point, `co2gate check
--workflow-run`, against the fake GitHub API: nothing forged is recorded, nothing crashes,
nothing reaches the workflow log as a command. And the ledger's sums stay finite."""

from __future__ import annotations

import json
import math
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import CliRun
from fakegithub import FakeGitHub
from test_publish_cli import Step
from test_workflow_run import FORK, HEAD, artifact, companion_env, ledger_entries
from test_workflow_run import payload as event_payload

from co2gate.app.companion import CPU_RAM_W, ENERGY_MARGIN, UNKNOWN_GPU_W, gpu_power_w
from co2gate.intensity import Location, resolve
from co2gate.ledger.interface import MAX_EMISSIONS_KG, MAX_ENERGY_KWH, to_line

BASE_G_PER_KWH = 400_000.0  # test_publish_cli's budget file: location: {intensity: 400000}
ARTIFACT = "co2gate-report/emissions.json"


@pytest.fixture
def step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_github: FakeGitHub) -> Step:
    monkeypatch.chdir(tmp_path)
    step = Step(tmp_path, fake_github)
    step.budget()
    fake_github.add_pull("octo/lab", 5, HEAD, head_repo=FORK)
    return step


def dated_event() -> dict[str, Any]:
    """The event, with the measured run's dates as GitHub gives them (the artifact's run
    went from 10:00 to 10:01 on 2025-03-04)."""
    event = event_payload()
    event["workflow_run"]["created_at"] = "2025-03-04T09:58:00Z"
    event["workflow_run"]["updated_at"] = "2025-03-04T10:03:00Z"
    return event


def companion(co2gate: CliRun, step: Step, *, process: bool = False) -> Any:
    env = companion_env(step, dated_event())
    return co2gate("check", "--workflow-run", ARTIFACT, env=env, process=process)


def assert_refused(result: Any, step: Step, said: str) -> None:
    """Exit 2, one stderr line naming the file and `said`, nothing recorded or commented,
    no workflow command but co2gate's own annotations."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"co2gate: {ARTIFACT}: ") or ARTIFACT in lines[0], lines[0]
    assert said in lines[0], lines[0]
    assert "Traceback" not in result.stderr
    for line in (result.stdout + result.stderr).splitlines():
        assert not line.startswith("::") or line.startswith(("::error title=co2gate", "::notice"))
    assert ledger_entries(step.fake) == [] and step.comments() == []
    assert len(lines[0]) < 600


def codecarbon_artifact(root: Path, *, g_per_kwh: float | None = None, **changes: Any) -> Path:
    """An artifact priced, as co2gate prices one, with codecarbon's data for USA/virginia."""
    price = resolve(Location(country="USA", region="virginia"))
    g = price.g_per_kwh if g_per_kwh is None else g_per_kwh
    fields: dict[str, Any] = {
        "intensity_g_per_kwh": g,
        "intensity_source": price.source,
        "location": {
            "country_iso_code": "USA",
            "country_name": "United States",
            "region": "virginia",
        },
        "emissions_kg": 0.00012 * 1.0 * g / 1000.0,
    }
    return artifact(root, **(fields | changes))


# -- forged figures: the artifact disagrees with itself ---------------------------------------


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({"emissions_kg": 1e6}, "emissions_kg: 1e+06 kg does not follow from the artifact's own"),
        ({"emissions_kg": 0.0}, "emissions_kg: 0 kg does not follow"),
        ({"emissions_kg": 1e308}, "emissions_kg: 1e+308 is not a finite number from 0 to"),
        ({"energy_kwh__total": 5.0, "emissions_kg": 2.0}, "energy_kwh.total: 5 kWh is not cpu"),
        (
            {"intensity_source": "configured: 400 gCO2e/kWh", "intensity_g_per_kwh": 4.0,
             "emissions_kg": 0.00012 * 4.0 / 1000},
            "intensity_g_per_kwh: 4 is not the 'configured: 400 gCO2e/kWh' it names",
        ),
    ],
)  # fmt: skip
def test_a_forged_figure_is_refused(
    co2gate: CliRun, step: Step, changes: dict[str, Any], said: str
) -> None:
    artifact(step.root, **changes)
    assert_refused(companion(co2gate, step), step, said)


def test_an_intensity_codecarbons_data_does_not_give_is_refused(
    co2gate: CliRun, step: Step
) -> None:
    codecarbon_artifact(step.root, g_per_kwh=1.0)
    assert_refused(companion(co2gate, step), step, "intensity_g_per_kwh: 1 is not the ")


def test_a_source_naming_another_place_than_the_artifacts_is_refused(
    co2gate: CliRun, step: Step
) -> None:
    texas = resolve(Location(country="USA", region="texas"))
    codecarbon_artifact(
        step.root,
        g_per_kwh=texas.g_per_kwh,
        intensity_source=texas.source,  # the figure and source of texas, the place virginia
    )
    assert_refused(companion(co2gate, step), step, "intensity_g_per_kwh: ")


def test_an_unknown_place_named_with_codecarbons_data_is_refused(
    co2gate: CliRun, step: Step
) -> None:
    codecarbon_artifact(step.root, location={"country_iso_code": "XXX"})
    assert_refused(companion(co2gate, step), step, "location: not a place in codecarbon's data")


def test_a_consistent_artifact_is_recorded_at_the_bases_own_price(
    co2gate: CliRun, step: Step
) -> None:
    """The artifact's own kg and intensity are checked, then replaced: the energy is priced
    with the base's location (400,000 g/kWh), so a cheap grid claimed in a fork is no use."""
    codecarbon_artifact(step.root)
    result = companion(co2gate, step)
    assert result.returncode == 0, result.stderr
    (entry,) = ledger_entries(step.fake)
    assert entry["emissions_kg"] == pytest.approx(0.00012 * BASE_G_PER_KWH / 1000, rel=1e-12)
    assert entry["energy_kwh"] == pytest.approx(0.00012, rel=1e-12)
    doc = json.loads((step.root / ARTIFACT).read_text())
    assert entry["emissions_kg"] != pytest.approx(doc["emissions_kg"])  # not the artifact's
    assert "priced here, not by the artifact" in result.stderr
    (comment,) = step.comments(5)
    assert "priced here, not by the artifact" in comment["body"]
    assert "checked for consistency only" in comment["body"]
    verdict = json.loads((step.root / "co2gate-report" / "verdict.json").read_text())
    assert verdict["run_kg"] == pytest.approx(entry["emissions_kg"])


def test_another_codecarbon_versions_intensity_is_noted_not_checked(
    co2gate: CliRun, step: Step
) -> None:
    codecarbon_artifact(step.root, intensity_source="codecarbon 2.8.0: USA/virginia (eGRID)")
    result = companion(co2gate, step)
    assert result.returncode == 0, result.stderr
    assert "names codecarbon 2.8.0" in result.stderr
    (entry,) = ledger_entries(step.fake)
    assert entry["emissions_kg"] == pytest.approx(0.00012 * BASE_G_PER_KWH / 1000, rel=1e-12)


# -- energy no listed hardware could draw in its duration --------------------------------------


def h100(energy_kwh: float) -> dict[str, Any]:
    return {
        "index": 0,
        "name": "NVIDIA H100 80GB HBM3",
        "energy_kwh": energy_kwh,
        "mean_power_w": energy_kwh * 3.6e6 / 60,
    }


def gpu_run(gpus: list[dict[str, Any]], gpu_kwh: float) -> dict[str, Any]:
    total = 0.0001 + gpu_kwh + 0.00002
    return {
        "gpus": gpus,
        "methods__gpu": "nvml-energy-counter",
        "energy_kwh__gpu": gpu_kwh,
        "energy_kwh__total": total,
        "emissions_kg": total * 400.0 / 1000,
    }


ONE_MINUTE_H = 60 / 3600


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        (  # 1 kWh of CPU in a minute: 60 kW
            {"energy_kwh": {"cpu": 1.0, "gpu": 0.0, "ram": 0.0, "total": 1.0}, "emissions_kg": 0.4},
            "energy_kwh.cpu: 1 kWh and ram 0 kWh in 1 min",
        ),
        (gpu_run([], 0.001), "energy_kwh.gpu: 0.001 kWh in 1 min 00 s is more than no GPU listed"),
        (  # an H100 (700 W) for a minute: at most 2 x 11.7 Wh
            gpu_run([h100(0.05)], 0.05),
            "gpus[0].energy_kwh: 0.05 kWh in 1 min 00 s is more than 'NVIDIA H100 80GB HBM3'",
        ),
        (  # each GPU within its bound, the component not: 2 listed, 3 claimed
            gpu_run([h100(0.02), h100(0.02) | {"index": 1}], 0.07),
            "energy_kwh.gpu: 0.07 kWh in 1 min 00 s is more than the 2 GPU(s) listed",
        ),
        ({"run__duration_s": 1e6}, "run.duration_s: 1e+06 s is longer than run.started_at"),
        (
            {"run__started_at": "2025-03-04T10:01:00.000+00:00",
             "run__ended_at": "2025-03-04T10:00:00.000+00:00"},
            "run.ended_at: 60 s before run.started_at",
        ),
        (  # a long run dated before the measured workflow run existed
            {"run__started_at": "2025-01-01T00:00:00.000+00:00", "run__duration_s": 100.0},
            "run.started_at: 2025-01-01T00:00:00+00:00 is before workflow run 4242 was created",
        ),
        (
            {"run__ended_at": "2025-12-31T23:00:00.000+00:00"},
            "run.ended_at: 2025-12-31T23:00:00+00:00 is after workflow run 4242 ended",
        ),
    ],
)  # fmt: skip
def test_impossible_energy_or_time_is_refused(
    co2gate: CliRun, step: Step, changes: dict[str, Any], said: str
) -> None:
    artifact(step.root, **changes)
    assert_refused(companion(co2gate, step), step, said)


def test_eight_busy_h100s_for_a_minute_are_recorded(co2gate: CliRun, step: Step) -> None:
    gpus = [h100(0.01) | {"index": i} for i in range(8)]  # 600 W each
    artifact(step.root, **gpu_run(gpus, 0.08))
    result = companion(co2gate, step)
    assert result.returncode in (0, 1), result.stderr  # gated: the base's budget decides
    (entry,) = ledger_entries(step.fake)
    assert entry["energy_kwh"] == pytest.approx(0.08012)


def test_the_energy_bound_is_the_documented_one() -> None:
    """The bound's figures: the table's board power, the unknown-GPU and CPU+RAM ceilings."""
    assert gpu_power_w("NVIDIA H100 80GB HBM3") == 700
    assert gpu_power_w("NVIDIA A100-SXM4-40GB") == 400
    assert gpu_power_w("Radeon 9000 of the future") == UNKNOWN_GPU_W == 1500
    assert (ENERGY_MARGIN, CPU_RAM_W) == (2.0, 4000.0)


# -- hostile bytes: refused in one line, never a traceback --------------------------------------

HUGE = 10**400


@pytest.mark.parametrize(
    ("changes", "raw", "said"),
    [
        ({"emissions_kg": "NaN"}, None, "emissions_kg: 'NaN' is not a number"),
        ({"energy_kwh__cpu": "Infinity"}, None, "energy_kwh.cpu: 'Infinity' is not a number"),
        ({}, "PUE=Infinity", "pue: inf is not a finite number"),
        ({}, "[" * 10_000 + "]" * 10_000, "nested too deeply"),
        ({}, '{"a":' * 10_000 + "1" + "}" * 10_000, "nested"),
        ({"requests": HUGE}, None, "requests: an integer of about 401 digits"),
        ({"run__limit_kg": HUGE}, None, "run.limit_kg: an integer of about 401 digits"),
        (
            {"run__stopped_by_guard": True,
             "run__guard": {"limit_kg": 1.0, "stopped_at_kg": HUGE, "stopped_after_s": 1.0,
                            "stopped_at": "2025-03-04T10:01:00Z", "signals": ["SIGTERM"]}},
            None,
            "run.guard.stopped_at_kg: an integer of about 401 digits",
        ),
        ({"run__ended_at": "9999-12-31T23:59:59-14:00"}, None, "run.ended_at: '9999-12-31"),
        ({"run__started_at": "0001-01-01T00:00:00+14:00"}, None, "run.started_at: '0001-01-01"),
        ({"host": {"cpu\n::error::forged": 1}}, None, "host['cpu\\n::error::forged'] (its name)"),
        ({"run__workload": "a\n::warning::x"}, None, "run.workload: 'a\\n::warning::x'"),
        ({"intensity_source": "x\n::error::y"}, None, "intensity_source: 'x\\n::error::y'"),
    ],
)  # fmt: skip
def test_a_hostile_artifact_is_refused_in_one_line(
    co2gate: CliRun, step: Step, changes: dict[str, Any], raw: str | None, said: str
) -> None:
    path = artifact(step.root, **changes)
    if raw == "PUE=Infinity":
        path.write_text(path.read_text().replace('"pue": 1.0', '"pue": Infinity'))
    elif raw is not None:
        path.write_text(raw)
    assert_refused(companion(co2gate, step, process=True), step, said)


def test_a_key_with_a_newline_in_energy_kwh_never_reaches_the_log(
    co2gate: CliRun, step: Step
) -> None:
    """A key co2gate does not read is ignored; the refusal names the field it missed."""
    artifact(step.root, energy_kwh={"cpu\n::error::forged": 0.1, "gpu": 0, "ram": 0, "total": 0.1})
    assert_refused(companion(co2gate, step, process=True), step, "energy_kwh.cpu: missing")


def test_bytes_that_are_not_utf8_are_refused_naming_the_file(co2gate: CliRun, step: Step) -> None:
    path = artifact(step.root)
    path.write_bytes(b'{"schema": "co2gate/emissions/v1", "run": "\xff\xfe::error::x"}')
    assert_refused(companion(co2gate, step, process=True), step, "not UTF-8 text (byte 43)")


# -- the ledger's sums ---------------------------------------------------------------------------


FILE_BUDGET = """version: 1
annual_budget_kg: 1000
allocations: {training: 1.0}
location: {intensity: 400}
ledger: {backend: file, path: ledger}
"""


def strict_json(text: str) -> Any:
    def refuse(name: str) -> None:
        raise AssertionError(f"{name} in co2gate's JSON")

    return json.loads(text, parse_constant=refuse)


def test_a_ledger_of_maximal_entries_sums_to_finite_figures(
    co2gate: CliRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every entry is at most MAX_EMISSIONS_KG (1e9 kg) and MAX_ENERGY_KWH (1e12 kWh), so a
    sum of n entries is at most n x 1e12: finite for any ledger that could exist (a float
    overflows past 1.8e308, n past 1e296). Here 20,000 entries at both bounds, then a run
    gated and a budget read over them: every figure finite and exact."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "budget.yml").write_text(FILE_BUDGET)
    n = 20_000
    today = datetime.now(timezone.utc)
    ended = today.replace(hour=0, minute=0, second=0, microsecond=0).isoformat(
        timespec="milliseconds"
    )
    lines = [
        to_line(
            {
                "repository": "octo/lab",
                "run_id": str(i),
                "run_attempt": "1",
                "job": "train",
                "label": "train",
                "category": "training",
                "emissions_kg": MAX_EMISSIONS_KG,
                "energy_kwh": MAX_ENERGY_KWH,
                "duration_s": 1e9,
                "ended_at": ended,
            }
        )
        for i in range(n)
    ]
    shard = tmp_path / "ledger" / f"{today:%Y}" / f"{today:%m}.jsonl"
    shard.parent.mkdir(parents=True)
    shard.write_text("".join(lines))
    assert n * MAX_ENERGY_KWH * 1e284 < sys.float_info.max

    # a run of today: the budget year that `co2gate budget` reads too
    path = artifact(
        tmp_path,
        run__started_at=f"{ended}",
        run__ended_at=f"{ended}",
        run__duration_s=0.0,
        energy_kwh={"cpu": 0, "gpu": 0, "ram": 0, "total": 0},
        emissions_kg=0.0,
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    checked = co2gate("check", "--budget-file", "budget.yml", "--json", str(path), env=env)
    assert checked.returncode == 1, checked.stderr  # far over: a fail, not a crash
    verdict = strict_json(checked.stdout)
    assert verdict["used_before_kg"] == n * MAX_EMISSIONS_KG
    for key in ("allocation_kg", "used_before_kg", "run_kg", "after_kg", "remaining_kg", "share"):
        assert math.isfinite(verdict[key]), key

    # `co2gate budget --json` sums every entry of the year, the run just recorded among them
    budget = co2gate("budget", "--budget-file", "budget.yml", "--json", env=env)
    assert budget.returncode == 0, budget.stderr
    standing = strict_json(budget.stdout)
    assert standing["used_kg"] == n * MAX_EMISSIONS_KG
    (training,) = standing["categories"]
    assert training["runs"] == n + 1 and math.isfinite(training["remaining_kg"])
    assert math.isfinite(training["share"])


def test_the_events_dates_bound_the_measured_window(tmp_path: Path) -> None:
    """workflow_run reads the run's creation and last update; a payload without them (or
    with a date that is not one) leaves the bound to the artifact's own dates."""
    from co2gate.github.context import workflow_run

    path = tmp_path / "event.json"
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": "workflow_run",
        "GITHUB_EVENT_PATH": str(path),
        "GITHUB_REPOSITORY": "octo/lab",
    }
    path.write_text(json.dumps(dated_event()))
    run = workflow_run(env)
    assert run.created_at == datetime(2025, 3, 4, 9, 58, tzinfo=timezone.utc)
    assert run.updated_at == datetime(2025, 3, 4, 10, 3, tzinfo=timezone.utc)
    event = dated_event()
    event["workflow_run"]["created_at"] = "yesterday\n::error::x"
    event["workflow_run"]["updated_at"] = 10**400
    path.write_text(json.dumps(event))
    run = workflow_run(env)
    assert (run.created_at, run.updated_at) == (None, None)
