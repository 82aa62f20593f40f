"""The floor: bare forward+backward throughput of the reference model, and the harness's PGD against it.

A gradient attack needs one forward and one backward pass per step and image, so the throughput of a bare
loop (``loss = cross_entropy(model(x), y); grad = autograd.grad(loss, x)``, nothing else) on the same model,
batch size, precision and images (batch after batch, as PGD walks them) is the most images x gradients per
second any gradient attack can reach. The script times that loop, a plain PGD loop (the loop plus the sign
step and projection), and the harness's ``benchmark.attacks.PGD`` through ``Predictor`` on the same images
twice: with every example run to the end (the same work as the floor's loop: its throughput as a fraction of
the floor is the engine's efficiency) and with its active set (a deterministic model's example leaves once
misclassified: the gradients it computes, counted by a hook on the model, and its wall-clock time against
the first). The floor and both PGD loops run the network as a run lays it out (fp32, channels_last:
``benchmark.runner.evaluation_layout``); the other rows (the default contiguous layout, bf16 autocast; on CUDA by
default) show what the layout gained and what another precision could.

    OMP_NUM_THREADS=1 python benchmarks/limit.py --device cpu --n 8 --batch-size 4 --steps 3
    python benchmarks/limit.py          # CUDA: batch 500, 1000 images, PGD-100
    python benchmarks/limit.py --device cpu --model mnist-cnn --checkpoint CKPT --dataset mnist \
        --data-dir DATA --n 1000 --batch-size 250 --steps 100 --iters 20 --eps 25.5    # the MNIST CNN, eps 0.1
"""

from __future__ import annotations

import argparse
import copy

import torch
import torch.nn.functional as F
from common import (
    HARNESS,
    VARIANTS,
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

from benchmark.attacks import PGD, project
from benchmark.predictive import Predictor
from benchmark.runner import evaluation_layout


def plain_pgd(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int,
              batch_size: int) -> None:
    """Madry PGD at its barest: random start, ``steps`` signed-gradient steps, no bookkeeping."""
    alpha = 2.5 * eps / steps
    for sl in batches(len(y), batch_size):
        xb, yb = x[sl], y[sl]
        x_adv = project(xb + torch.empty_like(xb).uniform_(-eps, eps), xb, eps)
        for _ in range(steps):
            xg = x_adv.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(F.cross_entropy(model(xg), yb, reduction="sum"), xg)
            x_adv = project(x_adv + alpha * grad.sign(), xb, eps)


def main(argv: list[str] | None = None) -> list[dict]:
    """Time the bare floor, a plain PGD loop and the harness's PGD, print each as a fraction of the floor and
    return the rows."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, n_cuda=1000, n_cpu=8, bs_cuda=500, bs_cpu=4)
    add_data_args(parser)
    add_model_args(parser)
    parser.add_argument("--steps", type=int, default=None, help="PGD steps (default: 100 on CUDA, 3 on CPU)")
    parser.add_argument("--iters", type=int, default=None,
                        help="timed forward+backward passes (default: 50 on CUDA, 5 on CPU)")
    parser.add_argument("--eps", type=float, default=8.0, help="PGD budget in units of 1/255")
    parser.add_argument("--repeats", type=int, default=3, help="each measurement is the fastest of this many runs")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=None,
                        help="forward+backward variants (default: all on CUDA, fp32 and channels_last on CPU); "
                             f"{HARNESS} (fp32) is the harness's")
    args = parser.parse_args(argv)
    device = resolve(args)
    cuda = device.type == "cuda"
    steps = args.steps or (100 if cuda else 3)
    iters = args.iters or (50 if cuda else 5)
    variants = args.variants or (list(VARIANTS) if cuda else ["fp32", HARNESS])
    variants = [HARNESS] + [v for v in variants if v != HARNESS]
    if cuda:
        torch.backends.cudnn.benchmark = False  # the harness leaves it off: same kernels for the floor and PGD

    model = load_model(args.model, device, args.checkpoint)
    images = load_images(args.dataset, args.data_dir, args.n, device, args.seed)
    x, y, n, bs = images.x, images.y, len(images.y), args.batch_size
    print_header("limit: bare forward+backward throughput against the harness's PGD", device, [
        f"model: {args.model}; data: {images.label}; batch size {bs}; PGD-{steps} at eps {args.eps:g}/255",
        (f"TF32 matmul: {torch.backends.cuda.matmul.allow_tf32 if cuda else 'n/a'}; "
         f"cuDNN TF32: {torch.backends.cudnn.allow_tf32 if cuda else 'n/a'}"),
    ])

    xb, yb = x[:bs], y[:bs]
    results = []
    for variant in variants:
        bare_passes(model, x, y, 2, bs, variant, device)  # warm-up
        runs = [bare_passes(model, x, y, iters, bs, variant, device) for _ in range(args.repeats)]
        results.append({"method": f"bare forward+backward ({variant})", "variant": variant,
                        "seconds": min(r[0] for r in runs), "grads": runs[0][1]})
    eps = args.eps / 255
    model = evaluation_layout(copy.deepcopy(model))  # the PGD loops run the network as a run lays it out
    predictor = Predictor(model, "deterministic", num_classes=10)
    rows_seen = [0]
    model.register_forward_pre_hook(lambda _, inputs: rows_seen.__setitem__(0, rows_seen[0] + len(inputs[0])))

    def harness_pgd(attack: PGD):
        rows_seen[0] = 0
        for sl in batches(n, bs):
            attack(predictor, x[sl], y[sl], eps, 1)

    plain_pgd(model, xb, yb, eps, 1, bs)  # warm-up
    seconds = min(timed(lambda: plain_pgd(model, x, y, eps, steps, bs), device)[1] for _ in range(args.repeats))
    results.append({"method": f"plain PGD-{steps} loop ({HARNESS})", "variant": HARNESS, "seconds": seconds,
                    "grads": n * steps})
    for stop, label in ((False, "every example to the end"), (True, "active set: broken examples leave")):
        attack = PGD(steps=steps, restarts=1, stop_when_broken=stop)
        seconds = min(timed(lambda a=attack: harness_pgd(a), device)[1] for _ in range(args.repeats))
        results.append({"method": f"harness PGD-{steps}, {label} ({HARNESS})", "variant": HARNESS, "seconds": seconds,
                        "grads": rows_seen[0]})  # the rows its forward passes actually computed

    floor = results[0]["grads"] / results[0]["seconds"]
    rows = []
    for r in results:
        r["throughput"] = r["grads"] / r["seconds"]
        r["fraction_of_floor"] = r["throughput"] / floor
        note = "not the harness's layout/precision" if r["variant"] != HARNESS else ""
        rows.append([r["method"], r["grads"], r["seconds"], r["throughput"], f"{r['fraction_of_floor']:.1%}", note])
    print_table(f"images x gradients per second, batch {bs}, fastest of {args.repeats} runs",
                ["method", "image-grads", "seconds", "image-grads/s", "of the floor", "note"], rows)
    full, active = results[-2], results[-1]
    console.print(f"harness PGD-{steps} reaches {full['fraction_of_floor']:.1%} of the bare forward+backward "
                  f"throughput ({HARNESS}, fp32) on the same work (every example, {steps + 1} gradients each: the "
                  f"last scores the final point); its active set computes {active['grads'] / full['grads']:.1%} of "
                  f"those gradients and takes {active['seconds'] / full['seconds']:.1%} of the time (the same "
                  "examples broken)")
    return results


if __name__ == "__main__":
    main()
