"""Weights & Biases: the figures as a logged step and the run's summary, the methods in its
config.

With WANDB_RUN_ID the training's run is resumed (`resume="allow"`); without it a run of
co2gate's own joins the training's: same WANDB_PROJECT, group WANDB_RUN_GROUP, job type
"co2gate". WANDB_MODE=offline writes the run's file under WANDB_DIR for `wandb sync`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from co2gate.trackers import TrackerError, metrics, missing, tags

if TYPE_CHECKING:
    from co2gate.model import Measurement

INIT_TIMEOUT_S = 30.0  # wandb waits 90 s by default for its service and the server


def send(m: Measurement, env: Mapping[str, str]) -> str:
    """Log m to the run; returns what was logged where. Raises TrackerError."""
    try:
        import wandb
    except ImportError as e:
        raise missing("wandb") from e

    run_id = env.get("WANDB_RUN_ID", "").strip()
    options: dict[str, Any] = {
        "project": env.get("WANDB_PROJECT") or None,
        "entity": env.get("WANDB_ENTITY") or None,
        "settings": wandb.Settings(silent=True, init_timeout=INIT_TIMEOUT_S, console="off"),
    }
    if run_id:
        options |= {"id": run_id, "resume": "allow"}
    else:
        group = env.get("WANDB_RUN_GROUP") or None
        options |= {"group": group, "job_type": "co2gate", "name": f"co2gate {m.run.label}"}
    figures, labels = metrics(m), tags(m)
    try:
        run = wandb.init(**options)
    except Exception as e:  # wandb.Error, its service's timeouts, a refused login
        raise TrackerError(f"could not start a run: {e}") from e
    try:
        run.log(figures)
        run.summary.update(figures)
        cast(Any, run.config).update(labels, allow_val_change=True)  # untyped in wandb
        done = f"run {run.id}" if run_id else f"a run {run.id} of its own"
    finally:
        run.finish()
    where = f" in group {options['group']}" if not run_id and options.get("group") else ""
    return f"logged {len(figures)} metrics and {len(labels)} config values to {done}{where}"
