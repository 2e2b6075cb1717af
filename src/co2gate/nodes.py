"""Which machine and which rank of a multi-node run this is: the `node` block of emissions.json.

Read from the launcher's environment (SLURM, torchrun, Ray, Open MPI / PMI) and two small
files (/proc/sys/kernel/random/boot_id, /etc/machine-id). Every value comes from outside, so
each is bound-checked: one that is not valid becomes one warning and the field None.

Pure and cheap: the standard library only (hashlib for the machine id).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final, TypeVar

from co2gate.model import BOOT_ID, HOSTNAME, JOB_ID, MACHINE_ID, MAX_RANK, Node, Scheduler

BOOT_ID_FILE: Final = Path("/proc/sys/kernel/random/boot_id")
MACHINE_ID_FILE: Final = Path("/etc/machine-id")
# /etc/machine-id "should be considered confidential" (machine-id(5)): only a keyed hash of
# it, specific to co2gate, is written; the same machine still gives the same value.
_APP_KEY: Final = b"co2gate/node/machine-id/v1"
_DIGITS: Final = re.compile(r"[0-9]{1,9}")
_MAX_FILE: Final = 128  # bytes read of boot_id and machine-id: each is under 40

T = TypeVar("T")


class _Env:
    """The environment's node facts, each checked; what fails is said once in `warnings`."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.warnings: list[str] = []

    def _value(self, name: str, check: Callable[[str], T | None], what: str) -> T | None:
        raw = self.env.get(name)
        if raw is None or raw == "":
            return None
        value = check(raw.strip())
        if value is None:
            shown = repr(raw[:40]) + ("..." if len(raw) > 40 else "")
            self.warnings.append(f"{name}={shown} is not {what}: it is left out of the node")
        return value

    def number(self, name: str, low: int, high: int) -> int | None:
        def check(raw: str) -> int | None:
            if not _DIGITS.fullmatch(raw):
                return None
            n = int(raw)
            return n if low <= n <= high else None

        return self._value(name, check, f"a whole number from {low} to {high}")

    def ident(self, name: str) -> str | None:
        return self._value(name, lambda raw: raw if JOB_ID.fullmatch(raw) else None, "an id")

    def first(self, *values: T | None) -> T | None:
        return next((v for v in values if v is not None), None)


def read(
    env: Mapping[str, str],
    *,
    boot_id_file: Path = BOOT_ID_FILE,
    machine_id_file: Path = MACHINE_ID_FILE,
) -> tuple[Node, list[str]]:
    """This process's node and rank, and a warning for each value that was not valid."""
    e = _Env(env)
    top = MAX_RANK - 1
    slurm = "SLURM_JOB_ID" in env
    torchrun = "TORCHELASTIC_RUN_ID" in env or ("RANK" in env and "WORLD_SIZE" in env)
    mpi = any(k in env for k in ("OMPI_COMM_WORLD_RANK", "PMI_RANK"))
    ray = any(k in env for k in ("RAY_JOB_ID", "RAY_NODE_ID"))
    # The innermost launcher names the rank: torchrun under srun gives each process its own.
    scheduler: Scheduler = (
        "torchrun" if torchrun else "slurm" if slurm else "mpi" if mpi else "ray" if ray else "none"
    )
    rank = local_rank = world = node_rank = None
    if scheduler == "torchrun":
        rank, world = e.number("RANK", 0, top), e.number("WORLD_SIZE", 1, MAX_RANK)
        local_rank, node_rank = e.number("LOCAL_RANK", 0, top), e.number("GROUP_RANK", 0, top)
    elif scheduler == "slurm":
        rank, world = e.number("SLURM_PROCID", 0, top), e.number("SLURM_NTASKS", 1, MAX_RANK)
        local_rank = e.number("SLURM_LOCALID", 0, top)
        node_rank = e.number("SLURM_NODEID", 0, top)
    elif scheduler == "mpi":
        rank = e.first(e.number("OMPI_COMM_WORLD_RANK", 0, top), e.number("PMI_RANK", 0, top))
        world = e.first(
            e.number("OMPI_COMM_WORLD_SIZE", 1, MAX_RANK), e.number("PMI_SIZE", 1, MAX_RANK)
        )
        local_rank = e.number("OMPI_COMM_WORLD_LOCAL_RANK", 0, top)
    if rank is not None and world is not None and rank >= world:
        e.warnings.append(f"rank {rank} is not below the world size {world}: both are left out")
        rank = world = None
    # The job that ties the nodes together: the batch job first, then the launcher's own id
    # (torchrun's default rendezvous id is the text "none", shared by unrelated runs).
    elastic = e.ident("TORCHELASTIC_RUN_ID") if torchrun else None
    job_id = e.first(
        e.ident("SLURM_JOB_ID") if slurm else None,
        elastic if elastic != "none" else None,
        e.ident("RAY_JOB_ID") if ray else None,
    )
    node_name = e.first(
        e.ident("SLURMD_NODENAME") if slurm else None, e.ident("RAY_NODE_ID") if ray else None
    )
    node = Node(
        scheduler=scheduler,
        host=_host(e.warnings),
        machine_id=_machine_id(machine_id_file),
        boot_id=_boot_id(boot_id_file, e.warnings),
        job_id=job_id,
        rank=rank,
        local_rank=local_rank,
        world_size=world,
        node_rank=node_rank,
        node_name=node_name,
    )
    return node, e.warnings


def _small_file(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_FILE)
    except OSError:
        return None
    try:
        return data.decode("ascii").strip()
    except UnicodeDecodeError:
        return ""


def _boot_id(path: Path, warnings: list[str]) -> str | None:
    text = _small_file(path)
    if text is None:  # not Linux, or no /proc: nothing to say
        return None
    if not BOOT_ID.fullmatch(text):
        warnings.append(f"{path} does not hold a boot id (a UUID): the node's boot id is unknown")
        return None
    return text


def _machine_id(path: Path) -> str | None:
    text = _small_file(path)
    if text is None or not MACHINE_ID.fullmatch(text):
        return None  # unreadable or empty in many containers: the boot id is enough
    import hmac

    return hmac.new(_APP_KEY, text.encode(), "sha256").hexdigest()[:32]


def _host(warnings: list[str]) -> str | None:
    try:
        name = os.uname().nodename
    except (AttributeError, OSError):  # not POSIX
        return None
    if not HOSTNAME.fullmatch(name):
        warnings.append(f"the host name {name[:40]!r} is not a valid host name: it is left out")
        return None
    return name
