"""A tiny DistributedDataParallel training loop on the CPU (the gloo backend), for torchrun.

Each rank fits the same small network to its own slice of a noisy sine; DDP averages the
gradients between ranks. It exists so that `co2gate measure` has a real multi-process run to
measure per rank (see run.sh beside it).

    torchrun --standalone --nproc-per-node 2 train.py [--steps 200]
"""

from __future__ import annotations

import argparse

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="optimizer steps per rank")
    args = parser.parse_args()

    dist.init_process_group("gloo")  # RANK, WORLD_SIZE, MASTER_ADDR from torchrun
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(rank)
    x = torch.rand(2048, 1) * 6.28 - 3.14
    y = torch.sin(x) + 0.1 * torch.randn_like(x)
    model = DistributedDataParallel(
        torch.nn.Sequential(torch.nn.Linear(1, 128), torch.nn.Tanh(), torch.nn.Linear(128, 1))
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(args.steps):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()  # DDP all-reduces the gradients here
        opt.step()
    if rank == 0:
        print(f"{world} ranks, {args.steps} steps: loss {loss.item():.4f}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
