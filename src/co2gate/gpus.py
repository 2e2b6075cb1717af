"""Datacentre GPUs: board power and dense peak tensor throughput, for `co2gate estimate`.

Each figure is the vendor's own, from the datasheet that `source` names. Power is the board's
maximum (TDP / TGP / TBP) in W: what a busy GPU draws at most, so a projection from it is an
upper bound for the GPUs (a measured run usually draws less). Peak is the dense (no 2:4
sparsity) bf16 tensor throughput in TFLOP/s; T4 and V100 have no bf16, so theirs is fp16.
Vendors print the sparse figure first: the dense one is half of it.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Final

from co2gate.errors import InputError

__all__ = ["GPUS", "Gpu", "UnknownGpu", "lookup"]


@dataclass(frozen=True)
class Gpu:
    """One GPU model as the table lists it."""

    name: str  # as the table and the output spell it: "H100 SXM"
    model: str  # the model token a name must contain, lower case: "h100"
    form: str  # "sxm", "pcie", "nvl" or "" where the model comes in one form
    memory_gb: tuple[int, ...]  # the memory sizes this row covers
    board_power_w: float
    peak_tflops: float  # dense tensor TFLOP/s at `precision`
    precision: str  # "bf16", or "fp16" where the GPU has no bf16
    source: str
    default: bool = False  # the row a bare model name ("h100") means


# fmt: off
GPUS: Final[tuple[Gpu, ...]] = (
    Gpu(
        "H100 SXM", "h100", "sxm", (80,), 700, 989, "bf16",
        "NVIDIA H100 Tensor Core GPU datasheet (SXM: 700 W; BF16 1,979 TFLOPS with sparsity)",
        default=True,
    ),
    Gpu(
        "H100 PCIe", "h100", "pcie", (80,), 350, 756, "bf16",
        "NVIDIA H100 Tensor Core GPU datasheet (PCIe: 300-350 W; BF16 1,513 TFLOPS with "
        "sparsity); NVIDIA H100 PCIe product brief PB-11133 (max TDP 350 W)",
    ),
    Gpu(
        "H100 NVL", "h100", "nvl", (94,), 400, 835, "bf16",
        "NVIDIA H100 Tensor Core GPU datasheet (NVL: 350-400 W; BF16 1,671 TFLOPS with "
        "sparsity)",
    ),
    Gpu(
        "H200", "h200", "sxm", (141,), 700, 989, "bf16",
        "NVIDIA H200 Tensor Core GPU datasheet (H200 SXM: up to 700 W; BF16 1,979 TFLOPS "
        "with sparsity)",
        default=True,
    ),
    Gpu(
        "B200", "b200", "sxm", (180, 192), 1000, 2250, "bf16",
        "NVIDIA HGX B200 datasheet (per GPU: 1,000 W; FP16/BF16 4.5 PFLOPS with sparsity)",
        default=True,
    ),
    Gpu(
        "A100 SXM 80GB", "a100", "sxm", (80,), 400, 312, "bf16",
        "NVIDIA A100 Tensor Core GPU datasheet (80GB SXM: 400 W; BF16 312 TFLOPS)",
        default=True,
    ),
    Gpu(
        "A100 SXM 40GB", "a100", "sxm", (40,), 400, 312, "bf16",
        "NVIDIA A100 Tensor Core GPU datasheet (40GB SXM: 400 W; BF16 312 TFLOPS)",
    ),
    Gpu(
        "A100 PCIe 80GB", "a100", "pcie", (80,), 300, 312, "bf16",
        "NVIDIA A100 Tensor Core GPU datasheet (80GB PCIe: 300 W; BF16 312 TFLOPS)",
    ),
    Gpu(
        "A100 PCIe 40GB", "a100", "pcie", (40,), 250, 312, "bf16",
        "NVIDIA A100 Tensor Core GPU datasheet (40GB PCIe: 250 W; BF16 312 TFLOPS)",
    ),
    Gpu(
        "L40S", "l40s", "", (48,), 350, 362, "bf16",
        "NVIDIA L40S GPU datasheet (350 W; BF16 733 TFLOPS with sparsity)",
        default=True,
    ),
    Gpu(
        "L4", "l4", "", (24,), 72, 121, "bf16",
        "NVIDIA L4 Tensor Core GPU datasheet (72 W; BF16 242 TFLOPS with sparsity)",
        default=True,
    ),
    Gpu(
        "A10", "a10", "", (24,), 150, 125, "bf16",
        "NVIDIA A10 Tensor Core GPU datasheet (150 W; BF16 125 TFLOPS, 250 with sparsity)",
        default=True,
    ),
    Gpu(
        "T4", "t4", "", (16,), 70, 65, "fp16",
        "NVIDIA T4 Tensor Core GPU datasheet (70 W; mixed-precision FP16/FP32 65 TFLOPS)",
        default=True,
    ),
    Gpu(
        "V100 SXM", "v100", "sxm", (16, 32), 300, 125, "fp16",
        "NVIDIA V100 Tensor Core GPU datasheet (SXM2: 300 W; tensor performance 125 TFLOPS)",
        default=True,
    ),
    Gpu(
        "V100 PCIe", "v100", "pcie", (16, 32), 250, 112, "fp16",
        "NVIDIA V100 Tensor Core GPU datasheet (PCIe: 250 W; tensor performance 112 TFLOPS)",
    ),
    Gpu(
        "MI300X", "mi300x", "", (192,), 750, 1307.4, "bf16",
        "AMD Instinct MI300X accelerator data sheet (750 W peak board power; BF16 1,307.4 "
        "TFLOPS, 2,614.9 with sparsity)",
        default=True,
    ),
)
# fmt: on

_FORM: Final = re.compile(r"^(sxm|pcie|nvl)[0-9]*$")  # SXM4, SXM5: the form is what counts
_MEMORY: Final = re.compile(r"^([0-9]+)gb$")
_MODELS: Final = {gpu.model for gpu in GPUS}


class UnknownGpu(InputError, ValueError):
    """A GPU name the table cannot place; the message lists the choices."""


def _choices() -> str:
    return ", ".join(gpu.name for gpu in GPUS)


def _unknown(name: str, why: str) -> UnknownGpu:
    normal = " ".join(re.split(r"[^a-z0-9]+", name.lower())).strip()
    spellings = {gpu.name.lower(): gpu.name for gpu in GPUS} | {
        gpu.model: gpu.name for gpu in GPUS if gpu.default
    }
    words = [normal, *normal.split()]
    close = [m for w in words for m in difflib.get_close_matches(w, spellings, n=1, cutoff=0.6)]
    hint = f" (did you mean {spellings[close[0]]!r}?)" if close else ""
    return UnknownGpu(f"--gpu {name!r}: {why}{hint}; choices: {_choices()}")


def lookup(name: str) -> Gpu:
    """The table's row for a GPU name, matched loosely: case, punctuation and other words
    (vendor, memory type) are ignored, so "h100", "H100-SXM" and "NVIDIA H100 80GB HBM3"
    all mean H100 SXM.

    A bare model means its usual datacentre form (H100 -> SXM, A100 -> SXM 80GB); a form
    (SXM/PCIe/NVL) or a memory size (40GB) picks among the rows of one model.
    """
    words = [w for w in re.split(r"[^a-z0-9]+", name.lower()) if w]
    models = {w for w in words if w in _MODELS}
    if len(models) != 1:
        why = "names no GPU in the table" if not models else "names more than one GPU"
        raise _unknown(name, why)
    (model,) = models
    rows = [gpu for gpu in GPUS if gpu.model == model]
    for word in words:
        form, memory = _FORM.match(word), _MEMORY.match(word)
        if form:
            rows = [gpu for gpu in rows if gpu.form in (form.group(1), "")]
        elif memory:
            rows = [gpu for gpu in rows if int(memory.group(1)) in gpu.memory_gb]
    if not rows:
        raise _unknown(name, f"no {model.upper()} of that form or memory size in the table")
    if len(rows) == 1:
        return rows[0]
    return next((gpu for gpu in rows if gpu.default), rows[0])
