r"""AutoAttack against pyautoattack: the harness's robust accuracy beside the reference's, on the same points.

``tests/attacks/test_crosscheck.py`` holds the harness's AutoAttack to pyautoattack's strength on a small MLP;
this script asks the same of the plugins as a run trains them, at full size. For each plugin and eps it attacks
the first ``--n`` test images with

* the harness's own ``benchmark.attacks.AutoAttack`` through ``benchmark.predictive.Predictor``, batch by
  batch with the seeds ``benchmark.evaluation.Evaluator`` gives the ``autoattack`` condition: the standard
  version on a deterministic, moment or ensemble predictor; APGD-CE and APGD-DLR on the K-draw average
  (``rand-eot``, ``--eot`` K = 20) on a stochastic one;
* ``pyautoattack.AutoAttack`` on a model whose logits are the log of the deployed predictive
  (``Predictor.log_predictive``: its softmax is the deployed predictive itself, so a valid logit vector):
  ``version="standard"``, or ``version="rand"`` (APGD-CE and APGD-DLR, ``eot_iter = K`` = 20) for a stochastic
  plugin, where each forward pass of that model is **one fresh single-draw evaluation** (one dropout mask), so
  its K-pass EOT averages the gradients of K single draws, the same K draws per step as the harness's. It gets
  a contiguous copy of the network, as a user would hand it over (the harness runs the run's channels_last
  layout; the numbers agree up to float rounding).

Both final point sets are scored by the same rule, the one a run scores its ``autoattack`` condition with
(``Evaluator._attack``): per batch, the re-evaluation seed of that batch, then R evaluations of the deployed
rule with S fresh draws each (argmax of the mean softmax); robust accuracy is the mean over the R evaluations
and its 95% interval is ``benchmark.metrics.mean_interval`` (Wilson, widened by the spread of the R). Both sets
see the same draws. Deterministic, moment and ensemble plugins have S = R = 1 (their predictive is exact).

The acceptance rule (issue 35): the harness's robust accuracy must not lie above pyautoattack's by more than
its own 95% half-width, ``(ci_high - ci_low) / 2``; a case that breaks it is a FAIL (the harness weaker).

The plugins are trained as ``benchmark run --model X --dataset mnist --profile quick --out CACHE`` trains
them, through the same code and checkpoint cache (``CACHE/checkpoints``, safetensors): a checkpoint a run
cached is reused, and one trained here is reused by the next run or invocation. ``--out`` is a JSON of the
results, rewritten after each attack finishes: a rerun skips what is there and does only the rest.

    python benchmarks/autoattack_crosscheck.py --data-dir DATA --cache /tmp/crosscheck/cache \
        --out /tmp/crosscheck/results.json          # n = 1000, eps 0.1 and 0.2, four plugins
    python benchmarks/autoattack_crosscheck.py --data-dir DATA --plugins vdp --n 200 --out vdp200.json
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from common import batches, console, hardware, print_header, print_table
from pyautoattack import AutoAttack as PyAutoAttack
from torch import nn

from benchmark.attacks import AutoAttack
from benchmark.attacks.autoattack import STANDARD_SQUARE_QUERIES, STANDARD_STEPS
from benchmark.data import load_dataset, to_float
from benchmark.evaluation import Condition, batch_seed, stream_seed
from benchmark.metrics import mean_interval
from benchmark.plugin import Task
from benchmark.predictive import Predictor
from benchmark.profiles import get_profile
from benchmark.registry import create_model
from benchmark.runner import RunRequest, _trained
from benchmark.store import DEFAULT_OUT, atomic_write_text, slug

PLUGINS = ("baseline", "vdp", "ensemble", "mc-dropout")
#: the attack a run's plan calls AutoAttack: its condition id seeds the batches (benchmark.evaluation)
CONDITION = "autoattack"
#: single-draw forward passes of pyautoattack's model for a stochastic plugin (its EOT draws them eot_iter times)
REFERENCE_DRAWS = 1
#: float slack of the acceptance rule (the accuracies are counts over n; the half-width a float)
SLACK = 1e-9


def passes(harness_acc: float, ci_low: float, ci_high: float, reference_acc: float) -> bool:
    """The acceptance rule: the harness's robust accuracy lies above the reference's by no more than half the
    width of its own 95% interval. A harness far *below* the reference passes: a stronger attack is no defect."""
    return harness_acc - reference_acc <= (ci_high - ci_low) / 2 + SLACK


@dataclass(frozen=True)
class Settings:
    """What a case's figures depend on; a stored case is reused only where every field is equal."""

    plugin: str
    version: str  # pyautoattack's: standard or rand
    eps: float
    n: int
    dataset: str
    seed: int
    train_key: str  # the checkpoint (its cache key: plugin code, recipe, data size, seed)
    steps: int  # every APGD and FAB stage (standard: 100)
    queries: int  # Square (standard: 5,000)
    eot: int  # K: draws per attack step of a stochastic plugin (1 otherwise)
    samples: int  # S: draws per evaluation of the deployed rule (1 for a non-random one)
    reevals: int  # R: evaluations of the final points (1 for a non-random one)
    batch_size: int

    @property
    def key(self) -> str:
        return " ".join(f"{k}={v}" for k, v in asdict(self).items())


class DeployedLogits(nn.Module):
    """The model pyautoattack attacks: the log of the deployed predictive of ``predictor``, ``draws`` fresh draws
    per call. ``softmax(log p) = p``, so these are logits of exactly the rule the harness attacks and scores."""

    def __init__(self, predictor: Predictor, draws: int):
        super().__init__()
        self.network = predictor.network  # a submodule, so the library sees its parameters and modes
        self.predictor = predictor
        self.draws = draws

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.predictor.log_predictive(x, self.draws)


@dataclass
class Trained:
    """A plugin's network as a quick run has it, and the two predictors the attacks go through."""

    name: str
    kind: str
    harness: Predictor  # the run's: channels_last layout, deterministic trunk for a stochastic one
    reference: Predictor  # a contiguous copy for pyautoattack
    train_key: str
    checkpoint: str
    train_seconds: float


def trained(name: str, dataset, device: torch.device, cache: Path, epochs: int | None, seed: int) -> Trained:
    """Train ``name`` with its quick recipe on the whole training set, or load the checkpoint a run (or an
    earlier invocation) cached under ``cache/checkpoints``: the harness's own ``runner._trained``."""
    plugin = create_model(name)
    profile = get_profile("quick", epochs=epochs)
    request = RunRequest(model=name, dataset=dataset.name, profile="quick", device=str(device), seed=seed, out=cache,
                         epochs=epochs, download=False)
    x, y = dataset.x_train[: profile.n_train], dataset.y_train[: profile.n_train]
    task = Task(dataset.name, dataset.input_shape, dataset.num_classes, len(y), profile.recipe)
    network, seconds, key, _ = _trained(plugin, request, task, x, y, device, None, profile.epochs)
    checkpoint = Path(cache) / "checkpoints" / f"{slug(dataset.name)}-{slug(plugin.name)}-{key}.safetensors"
    copy_ = copy.deepcopy(network).to(memory_format=torch.contiguous_format)
    random = plugin.predictive == "stochastic"
    harness = Predictor(network, plugin.predictive, num_classes=dataset.num_classes,
                        trunk=plugin.deterministic_trunk(network) if random else None)
    reference = Predictor(copy_, plugin.predictive, num_classes=dataset.num_classes,
                          trunk=plugin.deterministic_trunk(copy_) if random else None)
    return Trained(name, plugin.predictive, harness, reference, key, str(checkpoint), seconds)


@torch.no_grad()
def deployed_correct(predictor: Predictor, x: torch.Tensor, y: torch.Tensor, s: Settings,
                     condition: Condition) -> np.ndarray:
    """``[R, n]``: whether the deployed rule (S fresh draws) gets each point right, in each of R evaluations;
    per batch the re-evaluation seed a run's ``condition`` uses (``Evaluator._attack``), so every point set
    scored here sees the same draws."""
    out = []
    for b, sl in enumerate(batches(len(y), s.batch_size)):
        torch.manual_seed(stream_seed(batch_seed(s.seed, condition, b), "re-evaluation"))
        out.append(torch.stack([predictor.probs(x[sl], s.samples).argmax(1) == y[sl] for _ in range(s.reevals)]))
    return torch.cat(out, dim=1).cpu().numpy()


def scored(predictor: Predictor, x_adv: torch.Tensor, x: torch.Tensor, y: torch.Tensor, s: Settings,
           seconds: float, condition: Condition) -> dict:
    """Robust accuracy of ``x_adv`` under the deployed rule, its 95% interval and what the attack cost."""
    correct = deployed_correct(predictor, x_adv, y, s, condition)
    per_run = correct.mean(axis=1)
    acc, low, high = mean_interval(list(per_run), correct.shape[1])
    return {"robust_acc": acc, "ci_low": low, "ci_high": high, "per_evaluation": per_run.tolist(),
            "seconds": seconds, "max_linf": float((x_adv - x).abs().max()) if len(y) else 0.0}


def harness_points(model: Trained, x: torch.Tensor, y: torch.Tensor, s: Settings, condition: Condition):
    """The harness's AutoAttack as a run's ``autoattack`` condition calls it: the run seed, batch by batch, each
    batch's global generator seeded from (seed, condition id, batch index)."""
    attack = AutoAttack(steps=s.steps, queries=s.queries).for_run(s.seed, None)
    out = []
    for b, sl in enumerate(batches(len(y), s.batch_size)):
        torch.manual_seed(batch_seed(s.seed, condition, b))
        out.append(attack(model.harness, x[sl], y[sl], s.eps, s.eot).detach())
    return torch.cat(out)


def reference_points(model: Trained, x: torch.Tensor, y: torch.Tensor, s: Settings, device: torch.device):
    """The points of pyautoattack: its standard or rand version on the deployed rule's logits, unchanged but for the
    budgets where ``--steps``/``--queries`` shorten them (smoke runs) and ``eot_iter = K``."""
    logging.getLogger("auto-attack").setLevel(logging.ERROR)
    draws = REFERENCE_DRAWS if model.reference.is_random else 1
    aa = PyAutoAttack(DeployedLogits(model.reference, draws), version=s.version, eps=s.eps, norm="Linf",
                      seed=s.seed, device=device)
    aa.verbose = False
    if s.version == "rand":
        aa.apgd.eot_iter = s.eot
    if s.steps != STANDARD_STEPS:
        for apgd in (aa.apgd, aa.apgd_targeted):  # the schedule __init__ derives from n_iter
            apgd.n_iter, apgd.n_iter_2 = s.steps, max(int(0.22 * s.steps), 1)
            apgd.n_iter_min, apgd.size_decr = max(int(0.06 * s.steps), 1), max(int(0.03 * s.steps), 1)
        aa.fab.n_iter = s.steps
    aa.square.n_queries = s.queries
    torch.manual_seed(s.seed)
    x_adv, y_adv = aa.run_standard_evaluation(x.contiguous(), y, batch_size=s.batch_size)
    return x_adv.detach(), float((y_adv == y).float().mean())  # the library's own verdict, one noisy pass


def load_results(path: Path | None) -> dict:
    """The cases an earlier invocation stored (empty where none)."""
    if path is None or not path.is_file():
        return {"cases": {}}
    return json.loads(path.read_text())


def save_results(path: Path | None, results: dict) -> None:
    """Write the JSON atomically: an interrupted run keeps every attack that finished."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(results, indent=1) + "\n")


def run_case(model: Trained, x: torch.Tensor, y: torch.Tensor, s: Settings, results: dict, out: Path | None,
             device: torch.device) -> dict:
    """Both attacks of one case, each skipped where the JSON holds it already; the case's record."""
    case = results["cases"].setdefault(s.key, {"settings": asdict(s), "checkpoint": model.checkpoint})
    condition = Condition(CONDITION, s.eps)
    if "clean_acc" not in case:
        case["clean_acc"] = float(deployed_correct(model.harness, x, y, s, Condition("clean")).mean())
    for side in ("harness", "pyautoattack"):
        if side in case:
            console.print(f"  {model.name} eps {s.eps:g}: {side} done earlier, reusing")
            continue
        console.print(f"  {model.name} eps {s.eps:g}: {side} ({s.version}) on {len(y)} images ...")
        start = time.perf_counter()
        if side == "harness":
            x_adv, reported = harness_points(model, x, y, s, condition), None
        else:
            x_adv, reported = reference_points(model, x, y, s, device)
        seconds = time.perf_counter() - start
        case[side] = {**scored(model.harness, x_adv, x, y, s, seconds, condition), "hardware": hardware(device)}
        if reported is not None:
            case[side]["reported_acc"] = reported
        if case[side]["max_linf"] > s.eps + 1e-5:
            console.print(f"[red]warning:[/] {side} left the eps-ball: max |x_adv - x| = {case[side]['max_linf']:.6f}")
        console.print(f"  {model.name} eps {s.eps:g}: {side} robust accuracy {case[side]['robust_acc']:.4f} "
                      f"in {seconds:.1f} s")
        save_results(out, results)
    h, r = case["harness"], case["pyautoattack"]
    case["half_width"] = (h["ci_high"] - h["ci_low"]) / 2
    case["difference"] = h["robust_acc"] - r["robust_acc"]
    case["verdict"] = "PASS" if passes(h["robust_acc"], h["ci_low"], h["ci_high"], r["robust_acc"]) else "FAIL"
    save_results(out, results)
    return case


def main(argv: list[str] | None = None) -> list[dict]:
    """Run every (plugin, eps) case not stored yet, print all of them side by side and return their records."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plugins", nargs="+", default=list(PLUGINS),
                        help="registered plugins (default: baseline vdp ensemble mc-dropout); a stochastic one gets "
                             "the rand version")
    parser.add_argument("--eps", type=float, nargs="+", default=[0.1, 0.2],
                        help="L-inf budgets on the [0, 1] scale (default: 0.1 0.2, the sweep points of MNIST's 0.3 "
                             "where the plugins keep some accuracy; 0.3 may be added)")
    parser.add_argument("--n", type=int, default=1000, help="the first n test images (official order)")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--data-dir", default=None,
                        help="the directory holding mnist.npz (default: $BENCHMARK_DATA_DIR); the script refuses "
                             "the mnist-5k fallback a missing MNIST would give")
    parser.add_argument("--cache", type=Path, default=DEFAULT_OUT,
                        help="the --out of `benchmark run` whose checkpoints/ to reuse and add to (default: results)")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON of the results, written as each attack finishes; a rerun reuses what it holds")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--seed", type=int, default=0, help="the run seed (training and attacks)")
    parser.add_argument("--batch-size", type=int, default=250, help="images per attack call (a run's: 250)")
    parser.add_argument("--eot", type=int, default=20, help="K: EOT draws per step of a stochastic plugin (20)")
    parser.add_argument("--samples", type=int, default=32,
                        help="S: draws per evaluation of a stochastic plugin's deployed rule (32, the standard "
                             "profile's)")
    parser.add_argument("--reevals", type=int, default=5,
                        help="R: evaluations of a stochastic plugin's final points (5, the standard profile's)")
    parser.add_argument("--steps", type=int, default=STANDARD_STEPS,
                        help="APGD and FAB iterations of both implementations (tests and smoke runs only)")
    parser.add_argument("--queries", type=int, default=STANDARD_SQUARE_QUERIES,
                        help="Square queries of both implementations (tests and smoke runs only)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="overrides the quick recipe's epochs (tests only: the checkpoint is then not a run's)")
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))

    dataset = load_dataset(args.dataset, args.data_dir, download=False)
    if dataset.name != args.dataset:  # mnist -> mnist-5k when mnist.npz is not found: other images, other figures
        raise SystemExit(f"{args.dataset} not found ({dataset.note}); pass --data-dir or set BENCHMARK_DATA_DIR")
    x = to_float(dataset.x_test[: args.n]).to(device).contiguous()
    y = dataset.y_test[: args.n].long().to(device)
    n = len(y)
    budgets = ("standard budgets" if (args.steps, args.queries) == (STANDARD_STEPS, STANDARD_SQUARE_QUERIES)
               else f"SHORTENED budgets: {args.steps} steps, {args.queries} queries (smoke run, not a figure)")
    print_header("autoattack_crosscheck: the harness's AutoAttack against pyautoattack", device, [
        f"data: {dataset.name}, first {n} test images; eps {', '.join(f'{e:g}' for e in args.eps)}; {budgets}",
        f"checkpoints: {args.cache}/checkpoints (quick recipe); results: {args.out or 'not written (no --out)'}",
    ])
    results = load_results(args.out)

    cases = []
    for name in args.plugins:
        model = trained(name, dataset, device, args.cache, args.epochs, args.seed)
        random = model.harness.is_random
        console.print(f"{name}: {model.kind}, checkpoint {model.checkpoint} (trained in {model.train_seconds:.0f} s)")
        for eps in args.eps:
            s = Settings(plugin=name, version="rand" if random else "standard", eps=eps, n=n, dataset=dataset.name,
                         seed=args.seed, train_key=model.train_key, steps=args.steps, queries=args.queries,
                         eot=args.eot if random else 1, samples=args.samples if random else 1,
                         reevals=args.reevals if random else 1, batch_size=args.batch_size)
            cases.append(run_case(model, x, y, s, results, args.out, device))

    rows = []
    for case in cases:
        s, h, r = case["settings"], case["harness"], case["pyautoattack"]
        version = s["version"] + (f" K={s['eot']} S={s['samples']} R={s['reevals']}" if s["version"] == "rand" else "")
        rows.append([s["plugin"], version, f"{s['eps']:g}", s["n"], f"{case['clean_acc']:.4f}",
                     f"{h['robust_acc']:.4f} [{h['ci_low']:.4f}, {h['ci_high']:.4f}]", f"{r['robust_acc']:.4f}",
                     f"{100 * case['difference']:+.1f} / {100 * case['half_width']:.1f}", f"{h['seconds']:.1f}",
                     f"{r['seconds']:.1f}", case["verdict"]])
    print_table(f"{dataset.name}, first {n} test images, {budgets}",
                ["plugin", "version", "eps", "n", "clean", "harness [95% CI]", "pyautoattack", "Δ / half (pp)",
                 "harness s", "pyaa s", "rule"], rows)
    console.print("clean, harness, pyautoattack: accuracies of the clean images and of each attack's final points, "
                  "all scored by the harness's deployed rule (stochastic: mean over R evaluations of S fresh draws, "
                  "the same draws for both point sets); Δ: harness - pyautoattack; half: half the width of the "
                  "harness's 95% interval (Wilson, benchmark.metrics.mean_interval); rule: PASS when Δ <= half, "
                  "FAIL: the harness is weaker than pyautoattack by more than its own uncertainty.")
    return cases


if __name__ == "__main__":
    main()
