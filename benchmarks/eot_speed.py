"""EOT speed: a stochastic plugin (mc-dropout) under EOT with K draws, the harness against pyautoattack ``rand``.

* ``harness AutoAttack rand-eot``: ``benchmark.attacks.AutoAttack`` on a stochastic ``Predictor``: APGD-CE
  and APGD-DLR (100 iterations each, on every image), each forward pass the log-mean-exp of K draws
  batched along the batch axis (``Predictor.max_batch`` images per network call); where the network has a
  deterministic trunk (``ModelPlugin.deterministic_trunk``; the ResNet and tiny nets: everything before the
  dropout head) it runs once per input and only the head once per draw, as in a run
  (``--without-trunk`` adds a row with the whole network run per draw).
* ``pyautoattack rand``: ``AutoAttack(version="rand")`` on the bare network: APGD-CE then APGD-DLR on
  the images still standing, ``eot_iter = K`` single-draw forward/backward passes one after another per
  iteration, gradients averaged.

Both final points are re-evaluated by the harness's deployed rule with S fresh draws (robust accuracy). The
network is the registered ``mc-dropout`` plugin's net for the data's shape (``--network plugin``: its MNIST
or its CIFAR architecture; random weights unless ``--checkpoint`` names a trained safetensors/.pt state
dict, so its accuracies then mean nothing), or the reference ResNet-18 checkpoint with always-on dropout
before its last layer (``--network resnet18-dropout``: a trained stochastic model, accuracies meaningful),
or a tiny random CNN with dropout (``--network tiny-dropout``, plumbing tests). ``--iters`` below 100
shortens APGD in both (smoke runs only: ``AutoAttack(steps=...)`` in the harness, the APGD schedule's
settings in pyautoattack).

    OMP_NUM_THREADS=1 python benchmarks/eot_speed.py --device cpu --n 4 --eot 4 --iters 5 --network tiny-dropout
    python benchmarks/eot_speed.py --dataset cifar10 --data-dir DIR      # CUDA: 1000 images, K = 20
"""

from __future__ import annotations

import argparse
import copy
import logging

import torch
from common import (
    ResNet18,
    TinyNet,
    add_common_args,
    add_data_args,
    batches,
    console,
    load_images,
    print_header,
    print_table,
    reference_checkpoint,
    resolve,
    timed,
)
from pyautoattack import AutoAttack as PyAutoAttack
from torch import nn

from benchmark.attacks import AutoAttack
from benchmark.checkpoints import load_checkpoint, read_state
from benchmark.layers.dropout import MCDropout
from benchmark.plugin import Task
from benchmark.predictive import Predictor
from benchmark.registry import create_model
from benchmark.runner import evaluation_layout

NETWORKS = ("plugin", "resnet18-dropout", "tiny-dropout")


class Features(nn.Module):
    """The deterministic trunk of a network whose dropout sits in its ``linear`` head: ``network.features``."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network.features(x)


def build_network(kind: str, plugin_name: str, checkpoint, dropout: float, device: torch.device,
                  input_shape: tuple[int, int, int] = (3, 32, 32)) -> tuple[nn.Module, tuple | None, str]:
    """The ``--network`` to attack, in eval mode on ``device``, its deterministic ``(trunk, head)`` split (what
    ``ModelPlugin.deterministic_trunk`` gives a plugin's network; None where the plugin declares none), and a
    line saying what it is; a plugin's network is built for ``input_shape`` (its MNIST or CIFAR architecture)."""
    if kind == "plugin":
        plugin = create_model(plugin_name)
        if plugin.predictive != "stochastic":
            raise SystemExit(f"{plugin_name} is {plugin.predictive}, not stochastic")
        torch.manual_seed(0)
        network = plugin.build(Task("benchmark", input_shape, 10, 50000, "standard"))
        if checkpoint:
            load_checkpoint(network, checkpoint)
        what = f"{plugin_name} plugin network, " + (f"weights {checkpoint}" if checkpoint
                                                    else "random weights (accuracies mean nothing)")
        network = network.to(device).eval()
        return network, plugin.deterministic_trunk(network), what
    elif kind == "resnet18-dropout":
        network = ResNet18()
        network.load_state_dict(read_state(checkpoint or reference_checkpoint()), strict=True)
        network.linear = nn.Sequential(MCDropout(dropout), network.linear)
        what = f"reference ResNet-18 checkpoint + always-on dropout p={dropout} before the last layer"
    elif kind == "tiny-dropout":
        torch.manual_seed(0)
        network = TinyNet()
        network.linear = nn.Sequential(MCDropout(dropout), network.linear)
        what = f"tiny random CNN + always-on dropout p={dropout} (plumbing only)"
    else:
        raise SystemExit(f"unknown --network {kind!r}")
    network = network.to(device).eval()
    return network, (Features(network), network.linear), what


def harness_eot(predictor: Predictor, x, y, eps, draws, iters, batch_size, seed) -> torch.Tensor:
    """The harness's AutoAttack with ``draws`` EOT draws per step, batch by batch as the evaluator calls it."""
    attack = AutoAttack(seed=seed, steps=iters)
    out = []
    for b, sl in enumerate(batches(len(y), batch_size)):
        torch.manual_seed(seed + b)
        out.append(attack(predictor, x[sl], y[sl], eps, draws))
    return torch.cat(out)


def pyautoattack_rand(network: nn.Module, x, y, eps, draws, iters, batch_size, seed, device) -> torch.Tensor:
    """The reference: pyautoattack's ``rand`` version on the bare network, ``eot_iter = draws``."""
    aa = PyAutoAttack(network, version="rand", eps=eps, norm="Linf", seed=seed, device=device)
    aa.verbose = False
    aa.apgd.eot_iter = draws
    if iters != 100:
        aa.apgd.n_iter = iters
        aa.apgd.n_iter_2, aa.apgd.n_iter_min, aa.apgd.size_decr = (max(int(0.22 * iters), 1),
                                                                   max(int(0.06 * iters), 1), max(int(0.03 * iters), 1))
    torch.manual_seed(seed)
    return aa.run_standard_evaluation(x.contiguous(), y, batch_size=batch_size)[0]


@torch.no_grad()
def deployed_accuracy(predictor: Predictor, x, y, samples, batch_size, seed) -> float:
    """Accuracy of the deployed rule (mean softmax of ``samples`` draws) on ``x``, the same draws for every call."""
    torch.manual_seed(seed + 12345)  # the same fresh draws for every method's points
    correct = sum((predictor.probs(x[sl], samples).argmax(1) == y[sl]).sum().item()
                  for sl in batches(len(y), batch_size))
    return correct / len(y)


def main(argv: list[str] | None = None) -> list[dict]:
    """Time the harness's EOT AutoAttack against pyautoattack ``rand``, print the table and return its rows."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, n_cuda=1000, n_cpu=4, bs_cuda=500, bs_cpu=4)
    add_data_args(parser)
    parser.add_argument("--network", default="plugin", choices=NETWORKS)
    parser.add_argument("--plugin", default="mc-dropout", help="a registered stochastic plugin (with --network plugin)")
    parser.add_argument("--checkpoint", default=None, help="trained weights for the network (state dict)")
    parser.add_argument("--dropout", type=float, default=0.055,
                        help="dropout rate of the *-dropout networks (0.055: the plugin's CIFAR rate)")
    parser.add_argument("--eot", type=int, default=None, help="K, EOT draws per step (default: 20 on CUDA, 4 on CPU)")
    parser.add_argument("--samples", type=int, default=None,
                        help="S, draws of the final evaluation (default: 32 on CUDA, 4 on CPU)")
    parser.add_argument("--iters", type=int, default=None, help="APGD iterations (default: 100 on CUDA, 5 on CPU)")
    parser.add_argument("--eps", type=float, default=8.0, help="budget in units of 1/255")
    parser.add_argument("--max-batch", type=int, default=4096, help="Predictor.max_batch: images per network call")
    parser.add_argument("--without-trunk", action="store_true",
                        help="also time the harness running the whole network once per draw (no trunk split)")
    args = parser.parse_args(argv)
    device = resolve(args)
    cuda = device.type == "cuda"
    draws = args.eot or (20 if cuda else 4)
    samples = args.samples or (32 if cuda else 4)
    iters = args.iters or (100 if cuda else 5)
    logging.getLogger("auto-attack").setLevel(logging.ERROR)

    images = load_images(args.dataset, args.data_dir, args.n, device, args.seed)
    network, trunk, what = build_network(args.network, args.plugin, args.checkpoint, args.dropout, device,
                                         tuple(images.x.shape[1:]))
    x, y, n, bs = images.x, images.y, len(images.y), args.batch_size
    # the harness attacks the network as a run lays it out (channels_last, benchmark.runner.evaluation_layout);
    # pyautoattack gets it as loaded, as a user hands it over (one deepcopy keeps the trunk inside the network)
    laid_out, laid_out_trunk = copy.deepcopy((network, trunk))
    evaluation_layout(laid_out)
    predictor = Predictor(laid_out, "stochastic", max_batch=args.max_batch, num_classes=10, trunk=laid_out_trunk)
    eps = args.eps / 255
    clean = deployed_accuracy(predictor, x, y, samples, bs, args.seed)
    print_header("eot_speed: harness EOT against pyautoattack rand", device, [
        f"network: {what}", f"data: {images.label}; batch size {bs}; max_batch {args.max_batch}",
        f"deterministic trunk: {'run once per input, the head once per draw' if trunk else 'none declared'}",
        f"K = {draws} EOT draws, APGD {iters} iterations, eps {args.eps:g}/255, S = {samples}; "
        f"clean accuracy {clean:.1%}",
    ])

    harness_eot(predictor, x[:1], y[:1], eps, 1, 1, 1, args.seed)  # warm-up
    runs = [("harness AutoAttack rand-eot (K batched" + (", trunk once)" if trunk else ")"), predictor)]
    if args.without_trunk and trunk:
        runs.append(("harness AutoAttack rand-eot (K batched, whole network per draw)",
                     Predictor(laid_out, "stochastic", max_batch=args.max_batch, num_classes=10)))
    results = []
    for method, attacked in runs:
        adv, seconds = timed(lambda p=attacked: harness_eot(p, x, y, eps, draws, iters, bs, args.seed), device)
        results.append({"method": method, "seconds": seconds,
                        "robust_acc": deployed_accuracy(predictor, adv, y, samples, bs, args.seed)})
    adv_r, sec_r = timed(lambda: pyautoattack_rand(network, x, y, eps, draws, iters, bs, args.seed, device), device)
    results.append({"method": "pyautoattack rand (K sequential)", "seconds": sec_r,
                    "robust_acc": deployed_accuracy(predictor, adv_r, y, samples, bs, args.seed)})
    rows = []
    for r in results:
        r["images_per_s"] = n / r["seconds"]
        r["speedup"] = sec_r / r["seconds"]
        rows.append([r["method"], r["seconds"], r["images_per_s"], f"{r['robust_acc']:.1%}", f"{r['speedup']:.2f}x"])
    print_table(f"{n} images, K = {draws}", ["method", "seconds", "images/s", f"robust acc (S={samples})",
                                             "speed-up vs pyautoattack rand"], rows)
    console.print("the harness runs APGD-CE and APGD-DLR on every image; pyautoattack rand runs APGD-DLR only on "
                  "the images APGD-CE left standing (one noisy check): its work shrinks as robust accuracy falls")
    return results


if __name__ == "__main__":
    main()
