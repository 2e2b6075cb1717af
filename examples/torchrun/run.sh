#!/bin/sh
# Two ranks of torchrun on one machine's CPUs, each measured by its own `co2gate measure`,
# then gated as ONE run. Each rank's emissions.json names its node (host, boot id) and rank
# (torchrun's RANK, LOCAL_RANK, WORLD_SIZE); `check --merge` counts the machine's CPU and RAM
# once, since both ranks read the same devices at the same time.
#
#   pip install co2gate torch      # then, from this directory:
#   sh run.sh
set -eu
cd "$(dirname "$0")"
rm -rf co2gate-rank-*

# --no-python: torchrun starts the command as it is, once per rank, with RANK set for it.
torchrun --standalone --nproc-per-node 2 --no-python \
  sh -c 'exec co2gate measure --label ddp-cpu --out "co2gate-rank-$RANK" -- python train.py'

# One verdict, one ledger entry, one report with a by-node table.
co2gate check --merge --label ddp-cpu co2gate-rank-*/emissions.json
