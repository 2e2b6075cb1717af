"""Experiment trackers: a run's figures and methods in a real MLflow store (SQLite), in a W&B
offline run and in Prometheus (a textfile, Debian's real prometheus-pushgateway on loopback).

A tracker's failure is one warning line: the verdict, the exit code and emissions.json stay.
The trackers' packages are optional extras: each test skips without its package, except in
CI (CI=true), where .ci/run installs them and a missing one fails.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from conftest import CliRun, late

from co2gate import trackers
from co2gate.model import Measurement
from co2gate.trackers import Targets, prometheus

PY = sys.executable
IN_CI = os.environ.get("CI") == "true"
PASSING = (
    "version: 1\nannual_budget_kg: 1000\nallocations: {training: 1}\n"
    "location: {intensity: 400}\nledger: {backend: none}\n"
)
FAILING = PASSING.replace("annual_budget_kg: 1000", "annual_budget_kg: 0.000000001")
TOKEN = "ghp_" + "S3cretT0kenValue" * 2
# SQLAlchemy 2.1's notices about MLflow's store, raised in this process by the tests' own client.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def need(module: str) -> ModuleType:
    """The tracker's package; skipped where it is not installed, but never in CI."""
    if IN_CI:
        return importlib.import_module(module)
    return pytest.importorskip(module)


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """This environment without CI, tracker or codecarbon settings, HOME in tmp_path."""
    drop = ("GITHUB_", "CODECARBON_", "MLFLOW_", "WANDB_", "CI")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    return env | {"HOME": str(tmp_path / "home")} | extra


def warnings_in(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "warning: " in line]


def only_co2gates_lines(stderr: str) -> bool:
    """Nothing from a tracker's library (log records, deprecation notices) on stderr."""
    return all(line.startswith("co2gate: ") for line in stderr.splitlines())


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real emissions.json (co2gate measure), for the checks that gate it."""
    out = tmp_path_factory.mktemp("measured")
    env = clean_env(out)
    command = [PY, "-m", "co2gate", "measure", "--intensity", "400", "--label", "train"]
    command += ["--budget-file", str(out / "none.yml"), "--out", str(out), "--", PY, "-c", ""]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    return out / "emissions.json"


def doc_of(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def measurement(path: Path) -> Measurement:
    return Measurement.from_json(doc_of(path), str(path))


def budget(tmp_path: Path, text: str = PASSING) -> Path:
    path = tmp_path / "budget.yml"
    path.write_text(text)
    return path


def check(
    co2gate: CliRun,
    tmp_path: Path,
    emissions: Path,
    *flags: str,
    budget_file: Path | None = None,
    process: bool = False,
    **env: str,
) -> Any:
    """co2gate check of a measurement file, with the tracker flags, in a clean environment;
    in this process unless process (wandb starts a service that outlives its run)."""
    args = ["check", "--budget-file", str(budget_file or budget(tmp_path)), "--no-record"]
    args += ["--out", str(tmp_path / "out"), *flags, str(emissions)]
    return co2gate(*args, env=clean_env(tmp_path, **env), process=process)


def expected_metrics(doc: dict[str, Any]) -> dict[str, float]:
    e = doc["energy_kwh"]
    low, high = doc["emissions_kg_range"]
    return {
        "co2gate.emissions_kg": doc["emissions_kg"],
        "co2gate.emissions_kg_low": low,
        "co2gate.emissions_kg_high": high,
        "co2gate.energy_kwh.cpu": e["cpu"],
        "co2gate.energy_kwh.gpu": e["gpu"],
        "co2gate.energy_kwh.ram": e["ram"],
        "co2gate.energy_kwh.total": e["total"],
        "co2gate.intensity_g_per_kwh": doc["intensity_g_per_kwh"],
        "co2gate.pue": doc["pue"],
        "co2gate.duration_s": doc["run"]["duration_s"],
    }


def expected_tags(doc: dict[str, Any]) -> dict[str, str]:
    return {
        "co2gate.method.cpu": doc["methods"]["cpu"],
        "co2gate.method.gpu": doc["methods"]["gpu"],
        "co2gate.method.ram": doc["methods"]["ram"],
        "co2gate.intensity_source": doc["intensity_source"],
        "co2gate.label": doc["run"]["label"],
        "co2gate.workload": doc["run"]["workload"],
        "co2gate.run_id": doc["run"]["id"],
    }


# --- nothing is sent unless asked -------------------------------------------------------


def test_nothing_is_asked_or_sent_by_default(measured: Path, tmp_path: Path) -> None:
    assert not Targets().wanted
    env = {"MLFLOW_RUN_ID": "a" * 32, "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path)}
    assert trackers.send_all(measurement(measured), Targets(), env) == []
    assert list(tmp_path.iterdir()) == []
    assert Targets(prometheus_textfile=tmp_path / "x.prom").wanted


def test_without_a_flag_nothing_reaches_mlflow_even_with_its_environment(
    co2gate: CliRun, tmp_path: Path, mlflow_store: Path, measured: Path
) -> None:
    need("mlflow")
    uri, run_id = mlflow_run(mlflow_store, tmp_path)
    result = check(co2gate, tmp_path, measured, MLFLOW_TRACKING_URI=uri, MLFLOW_RUN_ID=run_id)
    assert result.returncode == 0, result.stderr
    assert "mlflow" not in result.stderr
    assert mlflow_data(uri, run_id).metrics == {}


# --- MLflow, a real SQLite store --------------------------------------------------------


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty SQLite tracking store, migrated once (MLflow's migrations take seconds)."""
    need("mlflow")
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow") / "template.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


def mlflow_run(store: Path, tmp_path: Path) -> tuple[str, str]:
    """A copy of the store with one run in it (as a training script's mlflow.start_run)."""
    from mlflow.tracking import MlflowClient

    shutil.copy(store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("training")
    run = client.create_run(experiment, run_name="train")
    client.set_terminated(run.info.run_id)  # the training's run has ended before co2gate's exit
    return uri, run.info.run_id


def mlflow_data(uri: str, run_id: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri).get_run(run_id).data


def test_measure_logs_the_figures_and_methods_to_the_active_mlflow_run(
    co2gate: CliRun, tmp_path: Path, mlflow_store: Path
) -> None:
    need("mlflow")
    uri, run_id = mlflow_run(mlflow_store, tmp_path)
    env = clean_env(tmp_path, MLFLOW_TRACKING_URI=uri, MLFLOW_RUN_ID=run_id)
    out = tmp_path / "out"
    args = ["measure", "--intensity", "400", "--label", "train", "--out", str(out), "--mlflow"]
    args += ["--budget-file", str(tmp_path / "none.yml"), "--", PY, "-c", ""]
    result = co2gate(*args, env=env)
    assert result.returncode == 0, result.stderr
    assert f"mlflow: logged 10 metrics and 7 tags to run {run_id}" in result.stderr
    assert only_co2gates_lines(result.stderr), result.stderr
    doc = doc_of(out / "emissions.json")
    data = mlflow_data(uri, run_id)
    assert data.metrics == pytest.approx(expected_metrics(doc), rel=1e-12)
    assert {k: v for k, v in data.tags.items() if k.startswith("co2gate.")} == expected_tags(doc)
    assert data.metrics["co2gate.emissions_kg"] > 0


def test_without_a_run_id_a_run_of_its_own_joins_the_named_experiment(
    co2gate: CliRun, tmp_path: Path, measured: Path, mlflow_store: Path
) -> None:
    need("mlflow")
    from mlflow.tracking import MlflowClient

    shutil.copy(mlflow_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {"MLFLOW_TRACKING_URI": uri, "MLFLOW_EXPERIMENT_NAME": "carbon"}
    result = check(co2gate, tmp_path, measured, "--mlflow", "--json", **env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["verdict"] == "pass"  # nothing of MLflow's on stdout
    assert "mlflow: logged 10 metrics and 7 tags to a new run" in result.stderr
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("carbon")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "co2gate train" and run.info.status == "FINISHED"
    doc = doc_of(measured)
    assert run.data.metrics == pytest.approx(expected_metrics(doc), rel=1e-12)


def test_without_a_run_or_experiment_mlflow_is_one_warning_and_the_verdict_stands(
    co2gate: CliRun, tmp_path: Path, measured: Path
) -> None:
    result = check(co2gate, tmp_path, measured, "--mlflow")
    assert result.returncode == 0, result.stderr
    (warning,) = warnings_in(result.stderr)
    assert "mlflow: MLFLOW_RUN_ID is not set" in warning
    assert (tmp_path / "out" / "verdict.json").is_file()


def test_a_run_id_the_store_does_not_have_is_one_warning(
    co2gate: CliRun, tmp_path: Path, mlflow_store: Path, measured: Path
) -> None:
    need("mlflow")
    uri, _ = mlflow_run(mlflow_store, tmp_path)
    env = {"MLFLOW_TRACKING_URI": uri, "MLFLOW_RUN_ID": "0" * 32}
    result = check(co2gate, tmp_path, measured, "--mlflow", **env)
    assert result.returncode == 0, result.stderr
    (warning,) = warnings_in(result.stderr)
    assert f"run {'0' * 32}" in warning and "not sent" in warning


def test_a_tracking_server_that_is_down_is_one_warning_in_bounded_time(
    co2gate: CliRun, tmp_path: Path, measured: Path
) -> None:
    need("mlflow")
    env = {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}", "MLFLOW_RUN_ID": "a" * 32}
    env |= {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
    started = time.monotonic()
    result = check(co2gate, tmp_path, measured, "--mlflow", **env)
    assert time.monotonic() - started < 60
    assert result.returncode == 0, result.stderr
    (warning,) = warnings_in(result.stderr)
    assert warning.startswith("co2gate: warning: mlflow:")


def test_a_missing_mlflow_package_says_which_extra_to_install(
    co2gate: CliRun, tmp_path: Path, measured: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    monkeypatch.setitem(sys.modules, "mlflow.entities", None)
    env = {"MLFLOW_RUN_ID": "a" * 32}
    result = check(co2gate, tmp_path, measured, "--mlflow", **env)
    assert result.returncode == 0, result.stderr
    (warning,) = warnings_in(result.stderr)
    assert "pip install 'co2gate[mlflow]'" in warning


def test_a_database_store_without_sqlalchemy_says_what_to_install(
    tmp_path: Path, measured: Path
) -> None:
    need("mlflow")
    blocked = "import sys; sys.modules['sqlalchemy'] = None; sys.argv[0] = 'co2gate'\n"
    blocked += "from co2gate.cli import main; main()"
    args = ["check", "--budget-file", str(budget(tmp_path)), "--no-record", "--mlflow"]
    args += ["--out", str(tmp_path / "out"), str(measured)]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = clean_env(tmp_path, MLFLOW_TRACKING_URI=uri, MLFLOW_RUN_ID="a" * 32)
    result = subprocess.run(
        [PY, "-c", blocked, *args], capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, result.stderr
    (warning,) = warnings_in(result.stderr)
    assert "a sqlite tracking store needs sqlalchemy: pip install sqlalchemy alembic" in warning


def test_a_failing_gate_still_fails_and_is_still_logged(
    co2gate: CliRun, tmp_path: Path, mlflow_store: Path, measured: Path
) -> None:
    need("mlflow")
    uri, run_id = mlflow_run(mlflow_store, tmp_path)
    env = {"MLFLOW_TRACKING_URI": uri, "MLFLOW_RUN_ID": run_id}
    result = check(
        co2gate, tmp_path, measured, "--mlflow", budget_file=budget(tmp_path, FAILING), **env
    )
    assert result.returncode == 1, result.stderr
    assert doc_of(tmp_path / "out" / "verdict.json")["verdict"] == "fail"
    assert mlflow_data(uri, run_id).metrics["co2gate.emissions_kg"] > 0


def test_a_token_never_reaches_a_tag(
    co2gate: CliRun, tmp_path: Path, mlflow_store: Path, measured: Path
) -> None:
    need("mlflow")
    uri, run_id = mlflow_run(mlflow_store, tmp_path)
    csv = tmp_path / "emissions.csv"
    csv.write_text(
        "timestamp,project_name,run_id,duration,emissions,energy_consumed\n"
        "2026-01-01T00:00:00,p,r,10,0.001,0.002\n"
    )
    env = {"MLFLOW_TRACKING_URI": uri, "MLFLOW_RUN_ID": run_id, "GITHUB_TOKEN": TOKEN}
    result = check(co2gate, tmp_path, csv, "--mlflow", "--label", f"x{TOKEN}", **env)
    assert result.returncode == 0, result.stderr
    tags = mlflow_data(uri, run_id).tags
    assert tags["co2gate.label"] == "x***"
    assert not [v for v in tags.values() if TOKEN in v]


# --- Weights & Biases, offline ----------------------------------------------------------


def wandb_records(wandb_dir: Path) -> list[Any]:
    """Every record of the one offline run under wandb_dir, decoded with wandb's protobuf.

    A .wandb file is a 7-byte header, then LevelDB's log format: 32 KiB blocks of chunks,
    each a 7-byte header (CRC32, length, type: 1 whole, 2 first, 3 middle, 4 last)."""
    from wandb.proto import wandb_internal_pb2

    (path,) = wandb_dir.glob("wandb/offline-run-*/run-*.wandb")
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, pos, pending, block = [], 7, b"", 32768
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending + chunk)
            records.append(record)
            pending = b""
        elif kind in (2, 3):
            pending += chunk
    return records


def wandb_summary(records: list[Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for r in records:
        if r.WhichOneof("record_type") == "summary":
            for item in r.summary.update:
                key = item.key or ".".join(item.nested_key)
                summary[key] = json.loads(item.value_json)
    return summary


def wandb_config(records: list[Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for r in records:
        if r.WhichOneof("record_type") == "config":
            config |= {i.key: json.loads(i.value_json) for i in r.config.update}
    return config


def the_run(records: list[Any]) -> Any:
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    return run


def wandb_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_PROJECT": "lab"} | extra


def test_without_a_run_id_wandb_logs_a_linked_run_in_the_same_group(
    co2gate: CliRun, tmp_path: Path, measured: Path
) -> None:
    need("wandb")
    env = wandb_env(tmp_path, WANDB_RUN_GROUP="exp-7")
    result = check(co2gate, tmp_path, measured, "--wandb", "--json", process=True, **env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["verdict"] == "pass"  # nothing of wandb's on stdout
    assert "wandb: logged 10 metrics and 7 config values to a run" in result.stderr
    assert "in group exp-7" in result.stderr
    assert only_co2gates_lines(result.stderr), result.stderr
    records = wandb_records(tmp_path)
    run = the_run(records)
    assert (run.project, run.run_group, run.job_type) == ("lab", "exp-7", "co2gate")
    assert run.display_name == "co2gate train"
    doc = doc_of(measured)
    summary = wandb_summary(records)
    for key, value in expected_metrics(doc).items():
        assert summary[key] == pytest.approx(value, rel=1e-12), key
    assert {k: v for k, v in wandb_config(records).items() if k.startswith("co2gate.")} == (
        expected_tags(doc)
    )


def test_with_a_run_id_wandb_writes_to_that_run(
    co2gate: CliRun, tmp_path: Path, measured: Path
) -> None:
    need("wandb")
    env = wandb_env(tmp_path, WANDB_RUN_ID="train0042")
    result = check(co2gate, tmp_path, measured, "--wandb", process=True, **env)
    assert result.returncode == 0, result.stderr
    assert "to run train0042" in result.stderr
    records = wandb_records(tmp_path)
    assert the_run(records).run_id == "train0042"
    summary = wandb_summary(records)
    assert summary["co2gate.emissions_kg"] == pytest.approx(doc_of(measured)["emissions_kg"])


def test_a_missing_wandb_package_says_which_extra_to_install(
    co2gate: CliRun, tmp_path: Path, measured: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)
    result = check(co2gate, tmp_path, measured, "--wandb", **wandb_env(tmp_path))
    assert result.returncode == 0, result.stderr
    (warning,) = warnings_in(result.stderr)
    assert "pip install 'co2gate[wandb]'" in warning


def test_wandb_online_without_a_login_is_one_warning(
    co2gate: CliRun, tmp_path: Path, measured: Path
) -> None:
    need("wandb")
    env = {"WANDB_MODE": "online", "WANDB_DIR": str(tmp_path)}
    env |= {"WANDB_BASE_URL": f"http://127.0.0.1:{free_port()}"}
    started = time.monotonic()
    result = check(co2gate, tmp_path, measured, "--wandb", process=True, **env)
    assert time.monotonic() - started < 90
    assert result.returncode == 0, result.stderr
    (warning,) = warnings_in(result.stderr)
    assert "warning: wandb:" in warning


# --- Prometheus -------------------------------------------------------------------------


def parsed(text: str) -> dict[str, list[Any]]:
    from prometheus_client.parser import text_string_to_metric_families

    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def test_the_textfile_holds_every_figure_as_a_labelled_gauge(
    co2gate: CliRun, tmp_path: Path
) -> None:
    path = tmp_path / "co2gate.prom"
    out = tmp_path / "out"
    args = ["run", "--budget-file", str(budget(tmp_path)), "--out", str(out), "--label", "train"]
    args += ["--prometheus-textfile", str(path), "--", PY, "-c", ""]
    result = co2gate(*args, env=clean_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert f"prometheus: wrote {path}" in result.stderr
    text = path.read_text()
    assert "# TYPE co2gate_emissions_kg gauge" in text and "# HELP co2gate_energy_kwh " in text
    families = parsed(text)
    doc = doc_of(out / "emissions.json")
    run = {"label": "train", "workload": "training"}
    (emitted,) = families["co2gate_emissions_kg"]
    assert emitted.labels == run and emitted.value == pytest.approx(doc["emissions_kg"])
    energy = {s.labels["component"]: s.value for s in families["co2gate_energy_kwh"]}
    assert energy == pytest.approx(doc["energy_kwh"])
    low, high = doc["emissions_kg_range"]
    assert families["co2gate_emissions_kg_low"][0].value == pytest.approx(low)
    assert families["co2gate_emissions_kg_high"][0].value == pytest.approx(high)
    methods = {s.labels["component"]: s.labels["method"] for s in families["co2gate_method_info"]}
    assert methods == doc["methods"]
    assert all(s.labels.items() >= run.items() for f in families.values() for s in f)


@pytest.mark.parametrize(
    "label", ['say "hi"', "back\\slash", "two\nlines", "end\\", 'all\\"\n of them', "ünï"]
)
def test_label_values_are_escaped_so_the_parser_reads_them_back(
    label: str, measured: Path, tmp_path: Path
) -> None:
    m = measurement(measured)
    m = dataclasses.replace(m, run=dataclasses.replace(m.run, label=label))
    families = parsed(prometheus.exposition(m))
    assert {s.labels["label"] for f in families.values() for s in f} == {label}


def test_the_textfile_is_replaced_whole_and_leaves_no_stray(
    co2gate: CliRun, tmp_path: Path, measured: Path
) -> None:
    path = tmp_path / "metrics" / "co2gate.prom"
    path.parent.mkdir()
    path.write_text("# an older run\n")
    result = check(co2gate, tmp_path, measured, "--prometheus-textfile", str(path))
    assert result.returncode == 0, result.stderr
    assert "co2gate_emissions_kg" in path.read_text()
    assert [p.name for p in path.parent.iterdir()] == ["co2gate.prom"]


def test_an_unwritable_textfile_is_one_warning_and_the_verdict_stands(
    co2gate: CliRun, tmp_path: Path, measured: Path
) -> None:
    path = tmp_path / "no-such-dir" / "co2gate.prom"
    result = check(co2gate, tmp_path, measured, "--prometheus-textfile", str(path))
    assert result.returncode == 0, result.stderr
    (warning,) = warnings_in(result.stderr)
    assert "prometheus: could not write" in warning
    assert (tmp_path / "out" / "verdict.json").is_file()


def test_a_textfile_node_exporter_would_never_read_stops_the_command(
    co2gate: CliRun, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    args = ["measure", "--out", str(tmp_path / "out"), "--prometheus-textfile", "x.txt"]
    result = co2gate(*args, "--", *late(marker), env=clean_env(tmp_path))
    assert result.returncode == 2
    assert ".prom" in result.stderr and not marker.exists()


@pytest.mark.parametrize("url", ["ftp://127.0.0.1:9091", "http://127.0.0.1:99999", "http://"])
def test_a_bad_pushgateway_url_stops_the_command(co2gate: CliRun, tmp_path: Path, url: str) -> None:
    marker = tmp_path / "ran"
    args = ["measure", "--out", str(tmp_path / "out"), "--prometheus-pushgateway", url]
    result = co2gate(*args, "--", *late(marker), env=clean_env(tmp_path))
    assert result.returncode == 2
    assert "--prometheus-pushgateway" in result.stderr and not marker.exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def pushgateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's prometheus-pushgateway on a free loopback port; its URL."""
    binary = shutil.which("prometheus-pushgateway")
    if binary is None:
        if IN_CI:
            pytest.fail("prometheus-pushgateway is not installed (.ci/run installs it)")
        pytest.skip("prometheus-pushgateway is not installed (apt-get install it)")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path_factory.mktemp("pushgateway") / "log").open("w")
    server = subprocess.Popen(
        [binary, f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(url + "/-/ready", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


def gateway_samples(url: str) -> dict[str, list[Any]]:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        return parsed(response.read().decode())


def test_the_pushgateway_serves_the_figures_under_the_label_and_workload(
    co2gate: CliRun, tmp_path: Path, measured: Path, pushgateway: str
) -> None:
    result = check(co2gate, tmp_path, measured, "--prometheus-pushgateway", pushgateway)
    assert result.returncode == 0, result.stderr
    assert f"prometheus: pushed 9 gauges to {pushgateway}" in result.stderr
    doc = doc_of(measured)
    group = {"job": "co2gate", "label": "train", "workload": "training"}
    families = gateway_samples(pushgateway)
    (emitted,) = [s for s in families["co2gate_emissions_kg"] if s.labels.items() >= group.items()]
    assert emitted.value == pytest.approx(doc["emissions_kg"])
    energy = {
        s.labels["component"]: s.value
        for s in families["co2gate_energy_kwh"]
        if s.labels.items() >= group.items()
    }
    assert energy == pytest.approx(doc["energy_kwh"])


def test_a_label_with_a_slash_is_its_own_group_on_the_pushgateway(
    co2gate: CliRun, tmp_path: Path, measured: Path, pushgateway: str
) -> None:
    label = 'eval/gsm8k "v2"'
    flags = ["--prometheus-pushgateway", pushgateway.removeprefix("http://")]  # no scheme: http
    m = measurement(measured)
    m = dataclasses.replace(m, run=dataclasses.replace(m.run, label=label))
    (tmp_path / "relabelled.json").write_text(json.dumps(m.to_json()))
    result = check(co2gate, tmp_path, tmp_path / "relabelled.json", *flags)
    assert result.returncode == 0, result.stderr
    samples = gateway_samples(pushgateway)["co2gate_emissions_kg"]
    assert [s.value for s in samples if s.labels.get("label") == label] == [
        pytest.approx(m.emissions_kg)
    ]


def test_a_pushgateway_that_is_down_is_one_warning_without_its_password(
    co2gate: CliRun, tmp_path: Path, measured: Path
) -> None:
    url = f"http://user:hunter2pass@127.0.0.1:{free_port()}"
    result = check(co2gate, tmp_path, measured, "--prometheus-pushgateway", url)
    assert result.returncode == 0, result.stderr
    (warning,) = warnings_in(result.stderr)
    assert "prometheus: could not push to http://127.0.0.1:" in warning
    assert "hunter2pass" not in result.stderr


# --- all of them at once, and the house rules ------------------------------------------


def test_every_tracker_failing_at_once_leaves_the_run_measured_and_its_exit_code(
    co2gate: CliRun, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = ["measure", "--intensity", "400", "--out", str(out), "--mlflow", "--wandb"]
    args += ["--prometheus-textfile", str(tmp_path / "missing" / "x.prom")]
    args += ["--prometheus-pushgateway", f"127.0.0.1:{free_port()}"]
    args += ["--budget-file", str(tmp_path / "none.yml"), "--", PY, "-c", "raise SystemExit(3)"]
    dead = f"http://127.0.0.1:{free_port()}"
    env = clean_env(tmp_path, WANDB_MODE="online", WANDB_BASE_URL=dead, WANDB_DIR=str(tmp_path))
    result = co2gate(*args, env=env)
    assert result.returncode == 3, result.stderr
    assert len(warnings_in(result.stderr)) == 4, result.stderr
    assert only_co2gates_lines(result.stderr), result.stderr
    assert "Traceback" not in result.stderr
    assert doc_of(out / "emissions.json")["run"]["exit_code"] == 3


def test_the_trackers_import_their_packages_only_when_sending() -> None:
    probe = (
        "import sys\n"
        "import co2gate.trackers, co2gate.trackers.mlflow, co2gate.trackers.wandb\n"
        "import co2gate.trackers.prometheus, co2gate.app.measure\n"
        "heavy = {'mlflow', 'wandb', 'prometheus_client', 'co2gate.model'} & set(sys.modules)\n"
        "print(sorted(heavy))\n"
    )
    result = subprocess.run([PY, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_measure_with_every_tracker_still_spawns_before_any_heavy_import(tmp_path: Path) -> None:
    from test_architecture import HEAVY, loaded_at_spawn

    args = ["measure", "--budget-file", str(tmp_path / "none.yml"), "--out", str(tmp_path / "o")]
    args += ["--mlflow", "--wandb", "--prometheus-textfile", str(tmp_path / "x.prom")]
    args += ["--prometheus-pushgateway", f"127.0.0.1:{free_port()}"]
    loaded = loaded_at_spawn(tmp_path, *args, "--", PY, "-c", "", env=clean_env(tmp_path))
    heavy = {*HEAVY, "mlflow", "wandb", "prometheus_client", "co2gate.model"}
    assert loaded.isdisjoint(heavy), sorted(loaded & heavy)
