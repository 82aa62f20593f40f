"""Is the adaptive attack on the detector strong enough? Its budget, and three times more, on the same points.

"Robust or detected" accuracy is only as low as the adaptive attack makes it: a weak attack leaves examples
"detected" that a stronger one would slip past the detector. This script takes a plugin trained with its quick
recipe, the detector of one uncertainty score at its clean threshold (5% false alarms on the clean correctly
classified images among the first ``--n``), and the examples PGD-20 misclassifies at ``--eps`` whose point the
detector flags; it runs ``DetectorAware`` with the protocol's budget and with ``--scale`` times the steps and
restarts, and prints the share of those examples each leaves misclassified and unflagged (evaded), with the paired
sign test the flags use (``diagnostics.sign_test``) for whether the larger budget evades significantly more.

    python benchmarks/adaptive_strength.py --plugin baseline --data-dir ../shared/datasets --n 500 --eps 0.2
    python benchmarks/adaptive_strength.py --plugin baseline --n 16 --steps 3 --epochs 1   # smoke run
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from autoattack_crosscheck import trained
from common import add_quick_plugin_args, console, hardware

from benchmark.attacks import PGD
from benchmark.attacks.detector import DetectorAware
from benchmark.data import load_dataset, to_float
from benchmark.diagnostics import sign_test
from benchmark.metrics import clean_threshold
from benchmark.uncertainty import PRIMARY_SCORE, predict


def evaded(predictor, x: torch.Tensor, y: torch.Tensor, score: str, threshold: float, draws: int) -> np.ndarray:
    """Per example: misclassified by the deployed rule and its score at or below the threshold."""
    with torch.no_grad():
        out = predict(predictor, x, draws)
    return ((out.log_predictive.argmax(1) != y) & (out.scores[score] <= threshold)).cpu().numpy()


def main(argv: list[str] | None = None) -> dict:
    """Run both budgets on the same flagged points, print the comparison and return it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_quick_plugin_args(parser, "baseline", 500, 0.2)
    parser.add_argument("--score", default=None, help="the uncertainty score [default: the kind's primary one]")
    parser.add_argument("--steps", type=int, default=100, help="the protocol's budget of the adaptive attack")
    parser.add_argument("--scale", type=int, default=3, help="the larger budget: this many times steps and restarts")
    parser.add_argument("--draws", type=int, default=4, help="EOT draws per step (and per judgement) for random models")
    args = parser.parse_args(argv)
    device = torch.device("cpu")
    dataset = load_dataset(args.dataset, data_dir=args.data_dir, download=False)
    predictor = trained(args.plugin, dataset, device, args.cache, args.epochs, args.seed).harness
    draws = args.draws if predictor.is_random else 1
    score = args.score or PRIMARY_SCORE[predictor.kind]
    x, y = to_float(dataset.x_test[: args.n]).to(device), dataset.y_test[: args.n].to(device)
    torch.manual_seed(args.seed)
    with torch.no_grad():
        clean = predict(predictor, x, draws)
    threshold = clean_threshold(clean.scores[score].cpu().numpy(), (clean.log_predictive.argmax(1) == y).cpu().numpy())
    x_pgd = PGD(steps=20).for_run(args.seed, None)(predictor, x, y, args.eps, draws)
    with torch.no_grad():
        at_pgd = predict(predictor, x_pgd, draws)
    flagged = ((at_pgd.log_predictive.argmax(1) != y) & (at_pgd.scores[score] > threshold)).cpu().numpy()
    index = np.flatnonzero(flagged)
    console.print(f"{args.plugin}, {score}, eps {args.eps:g}: threshold {threshold:.4g}; PGD-20 misclassifies "
                  f"{int((at_pgd.log_predictive.argmax(1) != y).sum())} of {args.n}, {len(index)} of them flagged")
    results = {}
    for name, steps, restarts in (("protocol", args.steps, 1), (f"{args.scale}x", args.scale * args.steps,
                                                                 args.scale)):
        attack = DetectorAware(score=score, steps=steps, restarts=restarts).against(threshold).for_run(args.seed, None)
        start = time.perf_counter()
        torch.manual_seed(args.seed)
        points = attack(predictor, x[index], y[index], args.eps, draws)
        seconds = time.perf_counter() - start
        results[name] = evaded(predictor, points, y[index], score, threshold, draws)
        console.print(f"  {name}: {steps} steps x {restarts} restarts: evaded {results[name].mean():.3f} "
                      f"({int(results[name].sum())} of {len(index)}) in {seconds:.1f} s")
    larger, protocol = results[f"{args.scale}x"], results["protocol"]
    # the sign test of the flags: that the protocol's budget left at least this many more examples safe by chance
    p = sign_test((~protocol)[None], (~larger)[None])
    console.print(f"  the larger budget evades {int((larger & ~protocol).sum())} the protocol's did not, and misses "
                  f"{int((protocol & ~larger).sum())} it did: sign test p = {p:.3g}; {hardware(device)}")
    return {"threshold": threshold, "flagged": len(index), **{k: float(v.mean()) for k, v in results.items()}, "p": p}


if __name__ == "__main__":
    main()
