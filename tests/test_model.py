"""Measurement: to_json is what emissions.build writes; from_json is the one checking reader."""

from __future__ import annotations

import copy
import dataclasses
import json
import tempfile
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from co2gate import emissions, model, units
from co2gate.github.context import ci_context
from co2gate.guard import GuardStop
from co2gate.intensity import Location, resolve
from co2gate.measure.fake import FakeMeter
from co2gate.measure.interface import Component, ComponentReading, GpuReading, Method, Reading
from co2gate.model import Measurement, MeasurementError
from co2gate.runner import ChildResult, MeterOutcome, run_measured

SOURCE = "art/emissions.json"
START = datetime(2026, 3, 4, 10, 0, 0, 123_456, tzinfo=timezone.utc)


def document(
    child: ChildResult,
    outcomes: Sequence[MeterOutcome],
    *,
    requests: int | None = None,
    ci: Mapping[str, Any] | None = None,
    intensity: float = 400.0,
) -> dict[str, Any]:
    """The emissions.json document emissions.build writes for a run."""
    return emissions.build(
        child,
        outcomes,
        resolve(Location(intensity_g_per_kwh=intensity, pue=1.1)),
        pue=1.1,
        labels=emissions.RunLabels("train", "training", requests=requests),
        ci=ci,
    ).to_json()


def child(seconds: float = 600.0, guard_stop: GuardStop | None = None) -> ChildResult:
    return ChildResult(
        argv=("python", "train.py", "--epochs", "3"),
        exit_code=0 if guard_stop is None else 143,
        signal=None if guard_stop is None else "SIGTERM",
        forwarded=(),
        started_at=START,
        ended_at=START + timedelta(seconds=seconds),
        duration_s=seconds,
        cpu_s=seconds * 3.5,
        limit_kg=None if guard_stop is None else guard_stop.limit_kg,
        guard_stop=guard_stop,
    )


def cpu_ram(seconds: float = 600.0) -> MeterOutcome:
    """codecarbon's share of a run: the CPU's RAPL counters and RAM's size estimate."""
    reading = Reading(
        parts=(
            ComponentReading(Component.CPU, 0.01, Method.RAPL, seconds),
            ComponentReading(Component.RAM, 0.002, Method.RAM_SIZE_ESTIMATE, seconds),
        ),
        host={"cpu_model": "AMD EPYC 7R13", "cpu_count": 8, "ram_total_gb": 31.0},
        notes=("codecarbon: a line it logged",),
    )
    return MeterOutcome("codecarbon", reading=reading, ready_after_s=2.0)


def two_gpus(seconds: float = 600.0) -> MeterOutcome:
    gpus = tuple(
        GpuReading(i, "NVIDIA H100 80GB HBM3", f"GPU-{i}", 0.1, 600.0, 91.0 - i, Method.FAKE)
        for i in range(2)
    )
    reading = Reading(
        parts=(ComponentReading(Component.GPU, 0.2, Method.NVML_ENERGY_COUNTER, seconds),),
        gpus=gpus,
        host={"gpu_count": 2, "gpu_model": "2 x NVIDIA H100 80GB HBM3"},
    )
    return MeterOutcome("nvml", reading=reading, ready_after_s=0.0)


def failed() -> MeterOutcome:
    return MeterOutcome(
        "codecarbon",
        meter=FakeMeter({Component.CPU: 1.0, Component.RAM: 1.0}),
        error="codecarbon: start failed",
    )


def stopped() -> GuardStop:
    return GuardStop(
        limit_kg=0.05,
        at_kg=0.051,
        energy_kwh=0.116,
        after_s=300.5,
        at=START + timedelta(seconds=300.5),
        grace_s=10.0,
        killed=True,
    )


def pull_request_ci(tmp_path: Path, **extra: str) -> dict[str, Any] | None:
    """The `ci` block ci_context makes on a pull_request event."""
    event = tmp_path / "event.json"
    pull = {"number": 12, "head": {"sha": "a" * 40}, "base": {"sha": "b" * 40}}
    event.write_text(json.dumps({"pull_request": pull}))
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_REPOSITORY": "octo/lab",
        "GITHUB_SHA": "c" * 40,
        "GITHUB_REF": "refs/pull/12/merge",
        "GITHUB_HEAD_REF": "feature",
        "GITHUB_BASE_REF": "main",
        "GITHUB_WORKFLOW": "train",
        "GITHUB_JOB": "train-small",
        "GITHUB_RUN_ID": "987",
        "GITHUB_RUN_ATTEMPT": "2",
    }
    block = ci_context(env)
    return None if block is None else block | extra


def full(tmp_path: Path) -> dict[str, Any]:
    """Every optional part at once: GPUs, requests, a guard stop, a CI block."""
    return document(
        child(guard_stop=stopped()),
        [two_gpus(), cpu_ram()],
        requests=5000,
        ci=pull_request_ci(tmp_path),
    )


with tempfile.TemporaryDirectory() as _event_dir:
    FULL = full(Path(_event_dir))


@pytest.fixture(scope="module")
def measured() -> dict[str, Any]:
    """A real run under the fake meter, as test_emissions builds it."""
    run, outcomes = run_measured(
        ["true"], [lambda: FakeMeter({Component.CPU: 50.0, Component.RAM: 10.0})]
    )
    return document(run, outcomes, requests=1000)


# ------------------------------------------------------------------ round trips


def round_trips(doc: dict[str, Any]) -> Measurement:
    """doc survives from_json then to_json, as a dict and as JSON text (key order, int/float)."""
    m = Measurement.from_json(doc, SOURCE)
    assert m.to_json() == doc
    assert json.dumps(m.to_json()) == json.dumps(doc)
    again = Measurement.from_json(json.loads(json.dumps(m.to_json())), SOURCE)
    assert again == m
    return m


def test_a_measured_run_round_trips(measured: dict[str, Any]) -> None:
    m = round_trips(measured)
    assert m.requests == 1000 and m.methods.cpu is Method.FAKE
    assert m.energy_kwh.total == pytest.approx(m.energy_kwh.cpu + m.energy_kwh.ram)


def test_gpus_requests_a_guard_stop_and_ci_round_trip(tmp_path: Path) -> None:
    m = round_trips(full(tmp_path))
    assert [g.index for g in m.gpus] == [0, 1] and m.gpus[1].mean_utilization_pct == 90.0
    assert m.gpus[0].method is Method.FAKE and m.methods.gpu is Method.NVML_ENERGY_COUNTER
    assert m.requests == 5000 and m.run.stopped_by_guard and m.run.exit_code == 143
    assert m.run.guard is not None and m.run.guard.signals == ("SIGTERM", "SIGKILL")
    assert m.run.guard.stopped_at == START.replace(microsecond=123_000) + timedelta(seconds=300.5)
    assert m.ci is not None and (m.ci.pr, m.ci.job, m.ci.sha) == (12, "train-small", "a" * 40)
    assert m.sci is not None and m.sci.functional_unit == "request" and m.sci.embodied.gpus == 2


@pytest.mark.parametrize(
    "case",
    ["nothing measured", "a source failed", "no requests", "trusted ci", "dirty grid"],
)
def test_other_runs_round_trip(case: str, tmp_path: Path) -> None:
    if case == "nothing measured":
        doc = document(child(0.0), [MeterOutcome("nvml")])
    elif case == "a source failed":
        doc = document(child(), [two_gpus(), failed()])
        assert doc["methods"] == {"cpu": "failed", "gpu": "nvml-energy-counter", "ram": "failed"}
    elif case == "no requests":
        doc = document(child(), [cpu_ram()])
    elif case == "trusted ci":  # the companion's block has one key more: head_repository
        doc = document(child(), [cpu_ram()], ci=pull_request_ci(tmp_path, head_repository="f/l"))
        assert list(doc["ci"])[-1] == "head_repository"
    else:
        doc = document(child(), [cpu_ram()], intensity=units.MAX_INTENSITY_G_PER_KWH)
    round_trips(doc)


def test_build_returns_the_record_from_json_reads_back(tmp_path: Path) -> None:
    m = emissions.build(
        child(guard_stop=stopped()),
        [two_gpus(), cpu_ram()],
        resolve(Location(intensity_g_per_kwh=400.0, pue=1.1)),
        pue=1.1,
        labels=emissions.RunLabels("train", "training", requests=5000),
        ci=pull_request_ci(tmp_path),
    )
    assert Measurement.from_json(json.loads(json.dumps(m.to_json())), SOURCE) == m
    assert m.run.started_at == START.replace(microsecond=123_000)  # to the millisecond
    # emissions_kg = energy_kwh.total x pue x intensity / 1000, by hand:
    # (0.01 + 0.2 + 0.002) kWh x 1.1 x 400 g/kWh / 1000 = 0.09328 kg
    assert m.energy_kwh.total == pytest.approx(0.212) and m.emissions_kg == pytest.approx(0.09328)


def shape(value: object) -> Any:
    """A document's keys, in order, and the type of each value."""
    if isinstance(value, dict):
        return [(k, shape(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [shape(v) for v in value[:1]]
    return type(value).__name__


def test_to_json_keeps_the_documents_shape(tmp_path: Path) -> None:
    """emissions.json (README: Files): keys may be added, never renamed; the order is build()'s."""
    doc = Measurement.from_json(full(tmp_path), SOURCE).to_json()
    assert [k for k, _ in shape(doc)] == [
        "schema",
        "run",
        "energy_kwh",
        "power_w",
        "methods",
        "coverage",
        "pue",
        "intensity_g_per_kwh",
        "intensity_source",
        "location",
        "emissions_kg",
        "gpus",
        "requests",
        "per_request_g",
        "per_request_wh",
        "host",
        "notes",
        "ci",
        "sci",
        "energy_kwh_range",
        "emissions_kg_range",
    ]
    assert shape(doc["run"]) == [
        ("id", "str"),
        ("label", "str"),
        ("workload", "str"),
        ("command", ["str"]),
        ("exit_code", "int"),
        ("signal", "str"),
        ("forwarded_signals", []),
        ("started_at", "str"),
        ("ended_at", "str"),
        ("duration_s", "float"),
        ("cpu_s", "float"),
        ("limit_kg", "float"),
        ("stopped_by_guard", "bool"),
        (
            "guard",
            [
                ("limit_kg", "float"),
                ("stopped_at_kg", "float"),
                ("stopped_at_kwh", "float"),
                ("stopped_after_s", "float"),
                ("stopped_at", "str"),
                ("grace_s", "float"),
                ("signals", ["str"]),
            ],
        ),
    ]
    floats = [(c, "float") for c in ("cpu", "gpu", "ram")]
    assert shape(doc["energy_kwh"]) == [*floats, ("total", "float")]
    assert shape(doc["power_w"]) == shape(doc["coverage"]) == floats
    assert shape(doc["methods"]) == [(c, "str") for c in ("cpu", "gpu", "ram")]
    assert shape(doc["gpus"]) == [
        [
            ("index", "int"),
            ("name", "str"),
            ("uuid", "str"),
            ("energy_kwh", "float"),
            ("mean_power_w", "float"),
            ("mean_utilization_pct", "float"),
            ("method", "str"),
        ]
    ]
    assert (doc["requests"], type(doc["per_request_g"]), type(doc["per_request_wh"])) == (
        5000,
        float,
        float,
    )
    assert [k for k, _ in shape(doc["ci"])] == [
        "provider",
        "repository",
        "sha",
        "ref",
        "head_ref",
        "base_ref",
        "base_sha",
        "event",
        "pr",
        "workflow",
        "job",
        "run_id",
        "run_attempt",
        "server_url",
    ]
    assert shape(doc["sci"]) == [
        ("operational_kg", "float"),
        ("embodied_kg", "float"),
        ("functional_unit", "str"),
        ("units", "int"),
        ("kg_per_unit", "float"),
        (
            "embodied",
            [
                ("server_kg", "float"),
                ("gpu_kg", "float"),
                ("lifetime_years", "float"),
                ("server_share", "float"),
                ("source", "str"),
                ("gpus", "int"),
                ("time_share", "float"),
            ],
        ),
    ]


def test_from_json_types_every_part() -> None:
    m = Measurement.from_json(FULL, SOURCE)
    assert m.run.started_at.tzinfo is not None and m.run.ended_at > m.run.started_at
    assert m.run.command == ("python", "train.py", "--epochs", "3")
    assert m.power_w.of(Component.GPU) == m.power_w.gpu
    assert dict(m.methods.items()) == {
        Component.CPU: Method.RAPL,
        Component.GPU: Method.NVML_ENERGY_COUNTER,
        Component.RAM: Method.RAM_SIZE_ESTIMATE,
    }
    assert m.host["cpu_model"] == "AMD EPYC 7R13"
    with pytest.raises(TypeError):
        m.host["cpu_model"] = "forged"  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.emissions_kg = 0.0  # type: ignore[misc]


def test_the_schema_lists_every_method() -> None:
    text = resources.files("co2gate").joinpath("schemas/emissions.v1.json").read_text()
    assert json.loads(text)["$defs"]["method"]["enum"] == [m.value for m in Method]


# ------------------------------------------------------------------ what from_json accepts


def test_keys_it_does_not_know_are_ignored() -> None:
    doc = copy.deepcopy(FULL)
    doc["carbon_aware"] = {"shifted_by_s": [1, 2, {"deep": None}]}
    doc["run"]["queue_s"] = 4.0
    doc["gpus"][0]["memory_gb"] = 80
    doc["ci"]["runner_os"] = "Linux"
    assert Measurement.from_json(doc, SOURCE).to_json() == FULL


def test_a_sparse_file_from_an_older_co2gate_is_read() -> None:
    """The keys the README's Files section shows; what later versions added takes its default."""
    doc = {
        "schema": "co2gate/emissions/v1",
        "run": {
            "id": "0e1f",
            "label": "train",
            "workload": "training",
            "command": ["python", "train.py"],
            "exit_code": 0,
            "started_at": "2025-03-04T10:00:00Z",
            "ended_at": "2025-03-04T10:01:00",
            "duration_s": 60,
            "stopped_by_guard": False,
        },
        "energy_kwh": {"cpu": 0.0001, "gpu": 0.0, "ram": 0.00002, "total": 0.00012},
        "power_w": {"cpu": 6.0, "gpu": 0.0, "ram": 1.2},
        "methods": {"cpu": "tdp-load-estimate", "gpu": "nvml-power-sampling", "ram": "none"},
        "pue": 1,
        "intensity_g_per_kwh": 400.0,
        "intensity_source": "override",
        "emissions_kg": 0.000048,
        "gpus": [
            {
                "index": 0,
                "name": "NVIDIA A100",
                "energy_kwh": 0.0,
                "mean_power_w": 0.0,
                "mean_utilization_pct": None,
            }
        ],
        "requests": None,
        "per_request_g": None,
        "ci": {"provider": "github", "repository": "fork/lab", "pr": 5, "job": ""},
    }
    m = Measurement.from_json(doc, SOURCE)
    assert m.run.ended_at == datetime(2025, 3, 4, 10, 1, tzinfo=timezone.utc)  # no offset: UTC
    assert (m.run.duration_s, m.pue, m.run.cpu_s, m.run.guard, m.sci) == (
        60.0,
        1.0,
        None,
        None,
        None,
    )
    assert m.gpus[0].method is Method.NVML_POWER_SAMPLING and m.gpus[0].uuid == ""
    assert m.coverage == model.PerComponent(None, None, None) and m.location == model.Place()
    assert m.host == {} and m.notes == () and m.ci is not None and m.ci.workflow is None
    written = m.to_json()
    assert "sci" not in written and written["ci"]["pr"] == 5
    assert Measurement.from_json(written, SOURCE) == m


# ------------------------------------------------------------------ what it refuses


def deep(levels: int) -> list[Any]:
    nested: list[Any] = []
    for _ in range(levels):
        nested = [nested]
    return nested


DELETE = object()
BIG = 10**400  # 401 digits: too large for a float


REFUSALS: list[tuple[tuple[Any, ...], Any, str]] = [
    (("emissions_kg",), float("nan"), "emissions_kg: nan is not a finite number from 0 to 1e+09"),
    (("energy_kwh", "total"), float("inf"), "energy_kwh.total: inf is not a finite number"),
    (("energy_kwh", "cpu"), -1, "energy_kwh.cpu: -1 is not a finite number from 0"),
    (("emissions_kg",), BIG, "emissions_kg: an integer of about 401 digits is not a finite"),
    (("power_w", "gpu"), -BIG, "power_w.gpu: an integer of about 401 digits"),
    (("run", "duration_s"), True, "run.duration_s: True is not a number"),
    (("run", "duration_s"), 1e9 + 1, "run.duration_s: 1000000001.0 is not a finite number"),
    (("run", "cpu_s"), "58", "run.cpu_s: '58' is not a number"),
    (("pue",), 0.9, "pue: 0.9 is not a finite number from 1 to 10"),
    (("pue",), 10.5, "pue: 10.5 is not"),
    (("intensity_g_per_kwh",), 1e6 + 1, "intensity_g_per_kwh: 1000001.0 is not a finite number"),
    (("requests",), 0, "requests: 0 is not a whole number from 1 to 1e+15"),
    (("requests",), 10**15 + 1, "requests: 1000000000000001 is not a whole number"),
    (("requests",), 1.5, "requests: 1.5 is not a whole number"),
    (("requests",), True, "requests: True is not a whole number"),
    (("per_request_g",), -0.5, "per_request_g: -0.5 is not"),
    (("coverage", "cpu"), 1.5, "coverage.cpu: 1.5 is not a finite number from 0 to 1"),
    (("run", "exit_code"), 256, "run.exit_code: 256 is not a whole number from 0 to 255"),
    (("run", "limit_kg"), 0, "run.limit_kg: 0 is not a finite number above 0"),
    (
        ("run", "ended_at"),
        "9999-12-31T23:59:59-14:00",
        "run.ended_at: '9999-12-31T23:59:59-14:00' is not a date within 1970-2100",
    ),
    (("run", "started_at"), "1969-12-31T23:59:59+00:00", "is not a date within 1970-2100"),
    (("run", "started_at"), "yesterday", "run.started_at: 'yesterday' is not an ISO 8601 date"),
    (("run", "started_at"), 1_700_000_000, "run.started_at: 1700000000 is not an ISO 8601"),
    (("run", "guard", "stopped_at"), "2026-13-01T00:00:00", "run.guard.stopped_at: "),
    (("notes",), deep(10_000), "notes: nested deeper than 32 levels"),
    (("carbon_aware",), {"a": deep(10_000)}, "carbon_aware: nested deeper than 32 levels"),
    (
        ("run", "label"),
        "x" * 10_000_000,
        "run.label: '" + "x" * 36 + "... is longer than 200 characters",
    ),
    (("intensity_source",), "x" * 10_000_000, "is longer than 1000 characters"),
    (("notes", 0), "n" * 10_000_001, "notes[0]: 'nnnnnnnn"),
    (("run", "command", 0), "p" * (model.MAX_ARG + 1), "run.command[0]: 'ppp"),
    (("run", "command"), "python train.py", "run.command: 'python train.py' is not a list"),
    (("run", "label"), "train\n::error::forged", "run.label: 'train\\n::error::forged' is not"),
    (("run", "label"), "   ", "run.label: '   ' is empty"),
    (("run", "label"), "l" * 201, "is longer than 200 characters"),
    (("run", "workload"), "train\u202eing", "run.workload: "),
    (("run", "id"), "a\x00b", "run.id: 'a\\x00b' holds a control character"),
    (("ci", "job"), "j" * 201, "ci.job: 'jjjj"),
    (("ci", "repository"), "octo/lab\r\n", "ci.repository: "),
    (("ci", "pr"), 0, "ci.pr: 0 is not a whole number from 1"),
    (("methods", "gpu"), "guess", "methods.gpu: 'guess' is not a method co2gate knows"),
    (("methods", "ram"), "ram-estimate", "methods.ram: 'ram-estimate' is not a method"),
    (("gpus", 0, "method"), "nvml", "gpus[0].method: 'nvml' is not a method"),
    (("gpus", 1, "mean_utilization_pct"), 100.5, "gpus[1].mean_utilization_pct: 100.5"),
    (("gpus", 1, "index"), -1, "gpus[1].index: -1 is not a whole number"),
    (("gpus",), [FULL["gpus"][0]] * 1025, "gpus: a list of 1025 items: more than 1024"),
    (("notes",), ["n"] * 1001, "notes: a list of 1001 items: more than 1000"),
    (("run", "guard", "signals"), ["SIGHUP"], "run.guard.signals[0]: 'SIGHUP' is not SIGTERM"),
    (("sci", "functional_unit"), "batch", "sci.functional_unit: 'batch' is not"),
    (("sci", "embodied", "server_share"), 2, "sci.embodied.server_share: 2 is not"),
    (("host", "cpu_count"), float("nan"), "host.cpu_count: nan is not a finite number"),
    (("host", "cpu_model"), ["AMD"], "host.cpu_model: a list of 1 item is not text"),
    (("host",), {"a\nb": 1}, "host['a\\nb'] (its name): 'a\\nb' is not a name"),
    (("host",), {str(i): i for i in range(101)}, "host: an object of 101 keys: more than 100"),
    (("schema",), "co2gate/emissions/v2", "schema: 'co2gate/emissions/v2' is not 'co2gate/"),
    (("schema",), DELETE, "schema: missing: not a co2gate emissions.json"),
    (("run", "ended_at"), DELETE, "run.ended_at: missing"),
    (("energy_kwh", "total"), DELETE, "energy_kwh.total: missing"),
    (("energy_kwh",), [1, 2], "energy_kwh: a list of 2 items is not an object"),
    (("run",), None, "run: None is not an object"),
]


@pytest.mark.parametrize(
    ("path", "value", "said"),
    REFUSALS,
    ids=[f"{'.'.join(map(str, p))}-{i}" for i, (p, _, _) in enumerate(REFUSALS)],
)
def test_a_bad_field_is_refused_by_name(path: tuple[Any, ...], value: Any, said: str) -> None:
    doc = copy.deepcopy(FULL)
    node = doc
    for key in path[:-1]:
        node = node[key]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    with pytest.raises(MeasurementError) as caught:
        Measurement.from_json(doc, SOURCE)
    message = str(caught.value)
    assert message.startswith(f"{SOURCE}: ") and said in message, message
    assert "\n" not in message and len(message) < 200


def test_a_document_that_is_not_an_object_is_refused() -> None:
    for value, said in ((deep(10_000), "a list of 1 item "), ("{}", "'{}'"), (None, "None")):
        with pytest.raises(MeasurementError, match=f"^x.json: top level: {said}"):
            Measurement.from_json(value, "x.json")


def test_the_error_is_an_input_error_and_a_value_error() -> None:
    """Callers catch ValueError today; main() turns every InputError into exit 2."""
    from co2gate.errors import InputError

    assert issubclass(MeasurementError, InputError) and issubclass(MeasurementError, ValueError)


def test_a_source_with_a_newline_stays_one_line() -> None:
    with pytest.raises(MeasurementError) as caught:
        Measurement.from_json([], "odd\nname.json")
    assert "\n" not in str(caught.value) and str(caught.value).startswith("odd\\nname.json: ")


# ------------------------------------------------------------------ never another exception

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([BIG, -BIG, 10**15, 2**63, 0, 1, -1])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(["2026-03-04T10:00:00+00:00", "9999-12-31T23:59:59-14:00", "rapl", ""])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path in a document, containers included."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += paths(item, (*prefix, i))
    return found


PATHS = paths(FULL)


def read_or_refuse(value: object) -> Measurement | None:
    try:
        m = Measurement.from_json(value, SOURCE)
    except MeasurementError as e:
        assert "\n" not in str(e) and str(e).startswith(SOURCE)
        return None
    assert Measurement.from_json(m.to_json(), SOURCE) == m  # what it accepts, it writes back
    return m


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_any_json_value_is_read_or_refused(value: object) -> None:
    read_or_refuse(value)
    read_or_refuse({"schema": model.SCHEMA, "run": value})


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(PATHS), json_values | st.just(DELETE)), max_size=3))
def test_any_change_to_a_valid_document_is_read_or_refused(
    changes: list[tuple[tuple[Any, ...], object]],
) -> None:
    doc = copy.deepcopy(FULL)
    for path, value in changes:
        node: Any = doc
        try:
            for key in path[:-1]:
                node = node[key]
            if value is DELETE:
                del node[path[-1]]
            else:
                node[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change removed or replaced the parent
    read_or_refuse(doc)
