"""A small CPU training loop (NumPy only) that runs for about ten seconds.

It fits a two-layer network to a noisy sine with plain gradient descent, so that
`co2gate measure -- python examples/train.py` has real work to measure.

    python examples/train.py [--seconds 10] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to train")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    x = rng.uniform(-np.pi, np.pi, size=(4096, 1))
    y = np.sin(x) + 0.1 * rng.standard_normal(x.shape)
    w1, b1 = rng.standard_normal((1, 256)) * 0.5, np.zeros(256)
    w2, b2 = rng.standard_normal((256, 1)) * 0.05, np.zeros(1)
    lr, epoch, start = 0.01, 0, time.monotonic()

    while time.monotonic() - start < args.seconds:
        hidden = np.tanh(x @ w1 + b1)
        error = hidden @ w2 + b2 - y
        loss = float(np.mean(error**2))
        grad_out = 2 * error / len(x)
        grad_hidden = (grad_out @ w2.T) * (1 - hidden**2)
        w2 -= lr * hidden.T @ grad_out
        b2 -= lr * grad_out.sum(axis=0)
        w1 -= lr * x.T @ grad_hidden
        b1 -= lr * grad_hidden.sum(axis=0)
        epoch += 1
        if epoch % 100 == 0:
            print(f"epoch {epoch:5d}  loss {loss:.4f}", flush=True)

    print(f"done: {epoch} epochs in {time.monotonic() - start:.1f} s, final loss {loss:.4f}")


if __name__ == "__main__":
    main()
