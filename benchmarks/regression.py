"""How often the regression rule fails a PR that did not regress, and catches one that did.

Simulated PRs: the base branch's last runs and the PR's own run are each drawn from a
lognormal distribution around a true figure (sigma = the noise, 5%, 10% or 20%); the PR's
true figure is the base's (false alarms) or 10%, 20% or 30% above it (detections). Each PR
is decided twice by the package's own `co2gate.regression.check`:
- new: the median of the last --runs base runs, failing when the bootstrap lower bound at
  --confidence is above 1 + --max-increase (the defaults: runs 5, confidence 0.9; 0.1);
- single: today's rule, the latest base run alone (what check() falls back to below 3 runs).

    python benchmarks/regression.py [--prs 200] [--runs 5] [--confidence 0.9] [--max-increase 0.1]

The rule bounds the base's noise, not the head's: one noisy head run can still fail. A PR
exactly at +max_increase sits on the line: about half of its runs fail under either rule.
"""

from __future__ import annotations

import argparse
import math
import random
import time

from co2gate import regression

NOISES = (0.05, 0.10, 0.20)
SHIFTS = (0.0, 0.10, 0.20, 0.30)


def rates(
    prs: int, noise: float, shift: float, runs: int, confidence: float, most: float, seed: int
) -> tuple[float, float]:
    """The share of `prs` simulated PRs failed by the new rule and by the single comparison."""
    rng = random.Random(seed)
    new = single = 0
    for i in range(prs):
        base = [math.exp(rng.gauss(0.0, noise)) for _ in range(runs)]
        head = (1 + shift) * math.exp(rng.gauss(0.0, noise))
        decided = regression.check(
            head, base, max_increase=most, runs=runs, confidence=confidence, seed=f"pr{i}"
        )
        latest = regression.check(head, base[-1:], max_increase=most)
        new += bool(decided and decided.failed)
        single += bool(latest and latest.failed)
    return new / prs, single / prs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prs", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--confidence", type=float, default=0.9)
    parser.add_argument("--max-increase", type=float, default=0.1)
    args = parser.parse_args()
    print(
        f"{args.prs} PRs per cell; new rule: runs={args.runs}, confidence={args.confidence}, "
        f"max_increase={args.max_increase}, {regression.RESAMPLES} resamples; single: the "
        "latest base run, same max_increase. Cells: share of PRs failed.\n"
    )
    head = "| noise | PR's true change | new rule | single comparison |"
    print(head)
    print("|---|---|---|---|")
    started = time.perf_counter()
    for n, noise in enumerate(NOISES):
        for s, shift in enumerate(SHIFTS):
            new, single = rates(
                args.prs, noise, shift, args.runs, args.confidence, args.max_increase, 100 * n + s
            )
            kind = "false alarms" if shift == 0 else "detected"
            print(
                f"| {noise:.0%} | +{shift:.0%} ({kind}) | {new:.1%} | {single:.1%} |",
                flush=True,
            )
    print(f"\n{time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
