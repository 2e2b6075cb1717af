"""MLflow: the figures as metrics and the methods as tags of a run, through MlflowClient.

The run is MLFLOW_RUN_ID's (the training's own run, which may have ended: MLflow accepts
metrics on a finished run); without it, a new run named "co2gate LABEL" in
MLFLOW_EXPERIMENT_ID or MLFLOW_EXPERIMENT_NAME (created when missing); with neither, nothing
is sent. The store is MLFLOW_TRACKING_URI's (MLflow's default when unset).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from co2gate.trackers import TrackerError, metrics, missing, tags

if TYPE_CHECKING:
    from co2gate.model import Measurement

# MLflow retries a failing HTTP request 7 times with backoff (minutes against a server that
# is down) and waits 120 s for each: co2gate's exit should not wait that long. A user's own
# setting wins.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}


DATABASES = ("sqlite", "postgresql", "mysql", "mssql")  # MLflow's SQLAlchemy stores


def send(m: Measurement, env: Mapping[str, str]) -> str:
    """Log m to the run; returns what was logged where. Raises TrackerError."""
    run_id = env.get("MLFLOW_RUN_ID", "").strip()
    experiment_id = env.get("MLFLOW_EXPERIMENT_ID", "").strip()
    experiment_name = env.get("MLFLOW_EXPERIMENT_NAME", "").strip()
    if not (run_id or experiment_id or experiment_name):
        raise TrackerError(
            "MLFLOW_RUN_ID is not set (nor MLFLOW_EXPERIMENT_NAME for a run of co2gate's own)"
        )
    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)
    try:
        from mlflow.entities import Metric, RunTag
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient
    except ImportError as e:
        raise missing("mlflow") from e
    for logger in ("mlflow", "alembic"):  # a new SQLite store narrates its migrations
        logging.getLogger(logger).setLevel(logging.WARNING)

    uri = env.get("MLFLOW_TRACKING_URI") or None
    _database_driver(uri)
    at_ms = int(m.run.ended_at.timestamp() * 1000)
    figures = [Metric(k, v, at_ms, 0) for k, v in metrics(m).items()]
    labels = [RunTag(k, v) for k, v in tags(m).items()]
    try:
        client = MlflowClient(tracking_uri=uri)
        own = not run_id
        if own:
            run_id = _new_run(client, experiment_id, experiment_name, m.run.label)
        client.log_batch(run_id, metrics=figures, tags=labels)
        if own:
            client.set_terminated(run_id)
    except MlflowException as e:
        raise TrackerError(f"run {run_id or '(new)'}: {e.message}") from e

    where = f"a new run {run_id}" if own else f"run {run_id}"
    return f"logged {len(figures)} metrics and {len(labels)} tags to {where}"


def _new_run(client: Any, experiment_id: str, experiment_name: str, label: str) -> str:
    """A run of co2gate's own in the experiment (created by name when missing)."""
    if not experiment_id:
        found = client.get_experiment_by_name(experiment_name)
        experiment_id = found.experiment_id if found else client.create_experiment(experiment_name)
    run = client.create_run(experiment_id, run_name=f"co2gate {label}")
    return str(run.info.run_id)


def _database_driver(uri: str | None) -> None:
    """mlflow-skinny reaches a database store through SQLAlchemy and Alembic, which it does
    not install; without them MLflow's own message lists URI schemes instead of saying so."""
    scheme = (uri or "").partition(":")[0].partition("+")[0]
    if scheme not in DATABASES:
        return
    for package in ("sqlalchemy", "alembic"):
        try:
            __import__(package)
        except ImportError as e:
            raise TrackerError(
                f"a {scheme} tracking store needs {package}: pip install sqlalchemy alembic "
                "(or the full mlflow)"
            ) from e
