"""How many EOT draws a stochastic plugin needs: PGD with K, 2K, 4K ... draws per step on the same points.

The published profile's K must be large enough that doubling it no longer breaks significantly more examples
(the ``eot-not-converged`` flag fired on bbb at K = 4). For each K this runs the profile's main attack (PGD, 20
steps, one restart) with K draws per step on the first ``--n`` test images of a plugin trained with its quick
recipe, and judges the final points as a run does: R re-evaluations of the deployed rule, S fresh draws each.
Each K is compared with the next by the paired sign test the flags use (``diagnostics.sign_test``: the
probability, were both equally strong, that the larger K breaks at least as many more examples as it did).
The smallest K whose doubling gives p >= ``diagnostics.ALPHA`` is the converged one.

    python benchmarks/eot_convergence.py --plugin bbb --data-dir ../shared/datasets --n 200 --eps 0.2
    python benchmarks/eot_convergence.py --plugin mc-dropout --n 8 --eot 1 2 --steps 2   # smoke run
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from autoattack_crosscheck import trained
from common import add_quick_plugin_args, console, hardware
from rich.table import Table

from benchmark.attacks import PGD
from benchmark.data import load_dataset, to_float
from benchmark.diagnostics import ALPHA, sign_test
from benchmark.evaluation import stream_seed
from benchmark.metrics import mean_interval


def judged(predictor, x_adv: torch.Tensor, y: torch.Tensor, samples: int, reevals: int, seed: int) -> np.ndarray:
    """``[R, n]``: the deployed rule's verdict on each point in R evaluations of S fresh draws each."""
    torch.manual_seed(stream_seed(seed, "re-evaluation"))
    with torch.no_grad():
        return torch.stack([predictor.probs(x_adv, samples).argmax(1) == y for _ in range(reevals)]).cpu().numpy()


def main(argv: list[str] | None = None) -> list[dict]:
    """Run PGD with each K on the same points, print the table and the converged K; return its rows."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_quick_plugin_args(parser, "bbb", 200, 0.2)
    parser.add_argument("--eot", type=int, nargs="+", default=[4, 8, 16, 32], help="the K to compare, ascending")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--samples", type=int, default=8, help="S: draws per decision")
    parser.add_argument("--reevals", type=int, default=3, help="R: evaluations of the final points")
    parser.add_argument("--batch-size", type=int, default=100)
    args = parser.parse_args(argv)
    device = torch.device("cpu")
    dataset = load_dataset(args.dataset, data_dir=args.data_dir, download=False)
    model = trained(args.plugin, dataset, device, args.cache, args.epochs, args.seed)
    if not model.harness.is_random:
        raise SystemExit(f"{args.plugin} is not stochastic: EOT draws change nothing")
    x, y = to_float(dataset.x_test[: args.n]), dataset.y_test[: args.n]
    console.print(f"{args.plugin} on the first {len(y)} {args.dataset} test images, eps {args.eps}, PGD-{args.steps}, "
                  f"S = {args.samples}, R = {args.reevals}; {hardware(device)}")
    rows, previous = [], None
    for k in args.eot:
        start = time.perf_counter()
        correct = []
        for b in range(0, len(y), args.batch_size):
            torch.manual_seed(stream_seed(args.seed, f"eot-{k}/{b}"))
            xb, yb = x[b: b + args.batch_size], y[b: b + args.batch_size]
            x_adv = PGD(steps=args.steps)(model.harness, xb, yb, args.eps, k)
            correct.append(judged(model.harness, x_adv, yb, args.samples, args.reevals,
                                  stream_seed(args.seed, f"judge-{k}/{b}")))
        correct = np.concatenate(correct, axis=1)
        acc, low, high = mean_interval(list(correct.mean(axis=1)), correct.shape[1])
        p = sign_test(previous, correct) if previous is not None else float("nan")
        rows.append({"eot": k, "robust_acc": acc, "ci_low": low, "ci_high": high, "p_vs_half": p,
                     "seconds": time.perf_counter() - start})
        previous = correct
    table = Table("K", "robust accuracy [95%]", "p (half K leaves more)", "seconds")
    for r in rows:
        table.add_row(str(r["eot"]), f"{r['robust_acc']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]",
                      "" if np.isnan(r["p_vs_half"]) else f"{r['p_vs_half']:.3g}", f"{r['seconds']:.0f}")
    console.print(table)
    converged = next((a["eot"] for a, b in zip(rows, rows[1:], strict=False) if b["p_vs_half"] >= ALPHA), None)
    console.print(f"smallest K whose doubling breaks no significantly more (p >= {ALPHA}): "
                  f"{converged if converged is not None else 'none of those tried'}")
    return rows


if __name__ == "__main__":
    main()
