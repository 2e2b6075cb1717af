#!/bin/sh
# Two ranks of torchrun on one machine's CPUs, each measured by its own `co2gate measure`,
# then gated as ONE run. Each rank's emissions.json names its node (host, boot id) and rank
# (torchrun's RANK, LOCAL_RANK, WORLD_SIZE); `check --merge` counts the machine's CPU and RAM
# once, since both ranks read the same devices at the same time.
#
# From your repository's root, where .github/carbon-budget.yml is (`co2gate init` writes one):
#   pip install co2gate torch
#   sh examples/torchrun/run.sh
set -eu
here=$(dirname "$0")
out=${CO2GATE_OUT:-co2gate-ranks}
rm -rf "$out"

# --no-python: torchrun starts the command as it is, once per rank, with RANK set for it.
# Single quotes on purpose: $RANK is each rank's own.
# shellcheck disable=SC2016
torchrun --standalone --nproc-per-node 2 --no-python \
  sh -c 'exec co2gate measure --label ddp-cpu --out "$0/rank-$RANK" -- python "$1"' \
  "$out" "$here/train.py"

# One verdict, one ledger entry, one report with a by-node table.
co2gate check --merge --out "$out/report" "$out"/rank-*/emissions.json
