r"""Attack speed: the harness's PGD, APGD-CE and AutoAttack against pyautoattack and torchattacks.

One fixed model (pyautoattack's CIFAR-10 ResNet-18 checkpoint, see ``common.py``), the same images, the
same device, one process. For each eps it times

* ``harness PGD-N``: ``benchmark.attacks.PGD(steps=N)`` through ``benchmark.predictive.Predictor``, batch
  by batch as ``benchmark.evaluation.Evaluator`` calls it (N + 1 gradients: the last scores the final
  point), against ``torchattacks.PGD`` with the same step size (2.5 eps / N) and random start (N gradients);
* ``harness APGD-CE``: ``benchmark.attacks.APGD`` (cross-entropy, 1 restart, 100 iterations: the first stage
  of the harness's AutoAttack) batch by batch, against pyautoattack's APGD-CE on the bare model;
* ``harness AutoAttack``: ``benchmark.attacks.AutoAttack`` (standard version, the harness's own engine) batch
  by batch, against ``pyautoattack.AutoAttack(version="standard").run_standard_evaluation`` on the bare model.

and prints seconds, images per second, robust accuracy (recomputed on the returned points) and, per
pair, the speed-up (reference seconds / harness seconds) and the robust-accuracy difference.

Where ``autoattack`` runs, one more row bounds what any implementation could do: ``AutoAttack standard
floor``, the passes the standard version must spend on the examples no stage breaks (every stage runs its
whole budget on them: APGD-CE and APGD-T 9 x (steps + 1) input gradients, FAB-T 9 x steps gradients and 9 x
steps forward passes, Square its queries in forward passes) at the bare forward and forward+backward rates of
the same network, layout and batch size, measured on those examples (``common.bare_passes``). It counts
nothing for the broken examples and no bookkeeping, so no fp32 implementation in the harness's layout can be
faster; its speed-up over pyautoattack is the ceiling on the harness's.

That model is not adversarially trained: at eps = 8/255 every attack reaches 0% in its first stage, so
the default eps list on CUDA also holds 1/255 and 0.5/255, where AutoAttack's later stages do real work.

    OMP_NUM_THREADS=1 python benchmarks/attack_speed.py --device cpu --dataset cifar10-jpeg \
        --data-dir DATA --n 4 --steps 10 --eps 8
    python benchmarks/attack_speed.py --dataset cifar10 --data-dir DIR    # CUDA: 1000 images, PGD-100
"""

from __future__ import annotations

import argparse
import copy
import logging
from collections.abc import Callable

import pyautoattack  # noqa: F401  (imported here so no timed call pays for the import)
import torch
import torchattacks
from common import (
    HARNESS,
    accuracy,
    add_common_args,
    add_data_args,
    add_model_args,
    bare_passes,
    batches,
    console,
    load_images,
    load_model,
    print_header,
    print_table,
    resolve,
    timed,
)

from benchmark.attacks import APGD, PGD, AutoAttack
from benchmark.attacks.autoattack import STANDARD_SQUARE_QUERIES, STANDARD_STEPS, STANDARD_TARGETS
from benchmark.predictive import Predictor
from benchmark.runner import evaluation_layout

#: the computed row that bounds any AutoAttack implementation's time (see the module docstring)
FLOOR = "autoattack-floor"
ATTACKS = ("pgd", "torchattacks-pgd", "apgd-ce", "pyautoattack-apgd-ce", "autoattack", "pyautoattack")
#: harness method -> the reference it is compared with
PAIRS = {"pgd": "torchattacks-pgd", "apgd-ce": "pyautoattack-apgd-ce", "autoattack": "pyautoattack",
         FLOOR: "pyautoattack"}


def _quiet_autoattack() -> None:
    logging.getLogger("auto-attack").setLevel(logging.ERROR)


def _per_batch(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor,
               batch_size: int, seed: int) -> torch.Tensor:
    out = []
    for b, sl in enumerate(batches(len(y), batch_size)):
        torch.manual_seed(seed + b)
        out.append(fn(x[sl], y[sl]).detach())
    return torch.cat(out)


def _pyautoattack(model: torch.nn.Module, attacks: list[str] | None, eps: float, seed: int, device: torch.device):
    from pyautoattack import AutoAttack as PyAutoAttack

    _quiet_autoattack()
    if attacks is None:
        aa = PyAutoAttack(model, version="standard", eps=eps, norm="Linf", seed=seed, device=device)
    else:
        aa = PyAutoAttack(model, version="custom", attacks=attacks, eps=eps, norm="Linf", seed=seed, device=device)
        aa.apgd.n_restarts = 1  # as in the standard version (custom starts from 5)
    aa.verbose = False
    return aa


def run_attack(name: str, model: torch.nn.Module, predictor: Predictor, x: torch.Tensor, y: torch.Tensor,
               eps: float, steps: int, batch_size: int, seed: int, device: torch.device) -> torch.Tensor:
    """The adversarial points of one method; pyautoattack always gets contiguous tensors (0.2.0's APGD-T
    crashes on channels_last ones)."""
    x = x.contiguous()
    if name == "pgd":
        attack = PGD(steps=steps, restarts=1)
        return _per_batch(lambda xb, yb: attack(predictor, xb, yb, eps, 1), x, y, batch_size, seed)
    if name == "torchattacks-pgd":
        attack = torchattacks.PGD(model, eps=eps, alpha=2.5 * eps / steps, steps=steps, random_start=True)
        return _per_batch(lambda xb, yb: attack(xb, yb), x, y, batch_size, seed)
    if name == "apgd-ce":
        attack = APGD(loss="ce", seed=seed)
        return _per_batch(lambda xb, yb: attack(predictor, xb, yb, eps, 1), x, y, batch_size, seed)
    if name == "pyautoattack-apgd-ce":
        aa = _pyautoattack(model, ["apgd-ce"], eps, seed, device)
        return aa.run_standard_evaluation(x, y, batch_size=batch_size)[0]
    if name == "autoattack":
        _quiet_autoattack()
        attack = AutoAttack(seed=seed)
        return _per_batch(lambda xb, yb: attack(predictor, xb, yb, eps, 1), x, y, batch_size, seed)
    if name == "pyautoattack":
        return _pyautoattack(model, None, eps, seed, device).run_standard_evaluation(x, y, batch_size=batch_size)[0]
    raise SystemExit(f"unknown attack {name!r}; choose from {', '.join(ATTACKS)}")


def standard_passes(classes: int) -> tuple[int, int]:
    """(input-gradient passes, forward passes) AutoAttack's standard version spends on one example no stage
    breaks, at ``classes`` classes: APGD-CE and APGD-T (steps + 1 gradients per run, T targets), FAB-T (per
    step and target one gradient at the point and one forward pass at its candidate), Square (its queries)."""
    targets = min(STANDARD_TARGETS, classes - 1)
    gradients = (1 + targets) * (STANDARD_STEPS + 1) + targets * STANDARD_STEPS
    return gradients, targets * STANDARD_STEPS + STANDARD_SQUARE_QUERIES


def autoattack_floor(network: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, survivors: torch.Tensor,
                     batch_size: int, device: torch.device, classes: int = 10) -> dict:
    """Seconds the standard version's passes on the ``survivors`` take at the bare rates of ``network`` in the
    harness's layout (fp32, channels_last), measured on those images, batch after batch."""
    xs, ys = x[survivors], y[survivors]
    gradients, forwards = standard_passes(classes)
    count = len(ys)
    if count == 0:
        return {"seconds": 0.0, "survivors": 0, "gradients": 0, "forwards": 0}
    iters = max(2, -(-4 * batch_size // count))  # at least four batches' worth of images, and two passes
    rates = {}
    for backward in (True, False):
        bare_passes(network, xs, ys, 1, batch_size, HARNESS, device, backward)  # warm-up
        seconds, images = bare_passes(network, xs, ys, iters, batch_size, HARNESS, device, backward)
        rates[backward] = images / seconds
    return {"seconds": count * (gradients / rates[True] + forwards / rates[False]), "survivors": count,
            "gradients": count * gradients, "forwards": count * forwards,
            "gradient_rate": rates[True], "forward_rate": rates[False]}


def label(name: str, steps: int) -> str:
    """The method's name in the printed table and the returned rows."""
    return {"pgd": f"harness PGD-{steps}", "torchattacks-pgd": f"torchattacks PGD-{steps}",
            "apgd-ce": "harness APGD-CE", "pyautoattack-apgd-ce": "pyautoattack APGD-CE",
            "autoattack": "harness AutoAttack standard", "pyautoattack": "pyautoattack standard",
            FLOOR: "AutoAttack standard floor (survivors' passes at the bare rates)"}[name]


def main(argv: list[str] | None = None) -> list[dict]:
    """Time every method in ``--attacks`` at every eps, print the comparison table and return its rows."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, n_cuda=1000, n_cpu=4, bs_cuda=500, bs_cpu=4)
    add_data_args(parser)
    add_model_args(parser)
    parser.add_argument("--steps", type=int, default=None, help="PGD steps (default: 100 on CUDA, 10 on CPU)")
    parser.add_argument("--eps", type=float, nargs="+", default=None,
                        help="budgets in units of 1/255 (default: 8 1 0.5 on CUDA, 8 on CPU)")
    parser.add_argument("--attacks", nargs="+", default=list(ATTACKS), choices=ATTACKS)
    parser.add_argument("--repeats", type=int, default=1,
                        help="time each method this many times and keep the fastest (first calls pay one-off "
                             "per-shape kernel set-up that a later method then reuses)")
    args = parser.parse_args(argv)
    device = resolve(args)
    cuda = device.type == "cuda"
    steps = args.steps or (100 if cuda else 10)
    eps_list = args.eps or ([8.0, 1.0, 0.5] if cuda else [8.0])

    model = load_model(args.model, device, args.checkpoint)
    images = load_images(args.dataset, args.data_dir, args.n, device, args.seed)
    x, y, n = images.x, images.y, len(images.y)
    # the harness attacks the network as a run lays it out (channels_last, benchmark.runner.evaluation_layout); the
    # reference libraries get the model as loaded, as a user hands it to them
    predictor = Predictor(evaluation_layout(copy.deepcopy(model)), "deterministic", num_classes=10)
    clean = accuracy(model, x, y, args.batch_size)
    print_header("attack_speed: harness attacks against pyautoattack and torchattacks", device, [
        f"model: {args.model}"
        + (f" ({args.checkpoint or 'pyautoattack examples/model_test.pt'})" if args.model == "resnet18" else ""),
        f"data: {images.label}; batch size {args.batch_size}; float32; clean accuracy {clean:.1%}",
    ])

    # warm-up: cuDNN autotuning and first-call allocations are not charged to the first method timed
    run_attack("pgd", model, predictor, x[: args.batch_size], y[: args.batch_size], eps_list[0] / 255, 1,
               args.batch_size, args.seed, device)

    results = []
    for eps_units in eps_list:
        eps = eps_units / 255
        for name in args.attacks:
            runs = [timed(lambda name=name, eps=eps: run_attack(name, model, predictor, x, y, eps, steps,
                                                                args.batch_size, args.seed, device), device)
                    for _ in range(args.repeats)]
            x_adv, seconds = runs[-1][0], min(r[1] for r in runs)
            if (x_adv - x).abs().max() > eps + 1e-5:
                console.print(f"[red]warning:[/] {name} left the eps-ball at eps={eps_units}/255")
            results.append({"eps": eps_units, "method": name, "label": label(name, steps), "seconds": seconds,
                            "images_per_s": n / seconds, "robust_acc": accuracy(model, x_adv, y, args.batch_size)})
            # as it goes: long runs keep what they measured
            console.print(f"  eps {eps_units:g}/255  {label(name, steps)}: {seconds:.3g} s, "
                          f"robust accuracy {results[-1]['robust_acc']:.1%}")
            if name == "autoattack":
                with torch.no_grad():
                    survivors = torch.cat([predictor.probs(x_adv[sl]).argmax(1) == y[sl]
                                           for sl in batches(n, args.batch_size)])
                floor = autoattack_floor(predictor.network, x, y, survivors, args.batch_size, device,
                                         predictor.num_classes)
                results.append({"eps": eps_units, "method": FLOOR, "label": label(FLOOR, steps), **floor,
                                "images_per_s": n / max(floor["seconds"], 1e-12),
                                "robust_acc": results[-1]["robust_acc"]})
                gradients, forwards = standard_passes(predictor.num_classes)
                console.print(f"  eps {eps_units:g}/255  {label(FLOOR, steps)}: {floor['seconds']:.3g} s "
                              f"({floor['survivors']} survivors x {gradients:,} gradients and {forwards:,} forward "
                              f"passes at {floor.get('gradient_rate', 0):,.0f} image-grads/s and "
                              f"{floor.get('forward_rate', 0):,.0f} images/s forward)")

    by_key = {(r["eps"], r["method"]): r for r in results}
    rows = []
    for r in results:
        ref = by_key.get((r["eps"], PAIRS.get(r["method"], "")))
        speedup = ref["seconds"] / r["seconds"] if ref and r["seconds"] > 0 else None
        delta = 100 * (r["robust_acc"] - ref["robust_acc"]) if ref else None
        rows.append([f"{r['eps']:g}/255", r["label"], r["seconds"], r["images_per_s"], f"{r['robust_acc']:.1%}",
                     f"{speedup:.2f}x" if speedup else "-", f"{delta:+.1f}" if delta is not None else "-"])
        r.update(speedup=speedup, robust_acc_delta_pp=delta)
    print_table(f"{n} images, batch {args.batch_size}, PGD steps {steps}, fastest of {args.repeats} run(s)",
                ["eps", "method", "seconds", "images/s", "robust acc", "speed-up vs ref", "Δ acc vs ref (pp)"], rows)
    console.print("speed-up = reference seconds / harness seconds (harness PGD vs torchattacks PGD, harness APGD-CE "
                  "vs pyautoattack APGD-CE, harness AutoAttack and its floor vs pyautoattack standard); Δ acc < 0: "
                  "harness stronger")
    return results


if __name__ == "__main__":
    main()
