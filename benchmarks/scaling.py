"""Scaling: evaluation time and peak GPU memory as n_examples, S, K and batch size grow; moment plugins' cost.

Part 1 runs ``benchmark.evaluation.Evaluator`` (the harness's own evaluation, profile ``standard`` with the
sizes overridden) on a stochastic plugin (mc-dropout by default) for two conditions, ``clean`` (S draws,
R re-evaluations do not apply) and ``pgd`` at eps (K-draw EOT for ``--steps`` steps, then R x S draws on the
final points), from a base point, growing one of n, S, K, batch size at a time. It prints seconds, images
per second and the peak GPU memory of each point; a point that runs out of memory is printed as OOM
(the target is none).

Part 2 times the deployed forward pass (``Predictor.probs``) and one input gradient
(``benchmark.attacks.input_gradient``) of the moment plugins (endp, vdp) and mc-dropout against the
baseline plugin on the same batch, and prints each as a multiple of the baseline's cost.

Networks are built by ``benchmark.registry.create_model`` with random weights: timings only (the
accuracies of untrained networks mean nothing, so none are printed). Data default to random images.

    OMP_NUM_THREADS=1 python benchmarks/scaling.py --device cpu
    python benchmarks/scaling.py          # CUDA: base n=1000, S=32, K=20, batch 250, PGD-10
"""

from __future__ import annotations

import argparse
import time

import torch
from common import (
    add_common_args,
    add_data_args,
    console,
    load_images,
    peak_gib,
    print_header,
    print_table,
    reset_peak,
    resolve,
    sync,
    timed,
)

from benchmark.attacks import input_gradient
from benchmark.attacks.plan import attack_plan
from benchmark.evaluation import Condition, Evaluator
from benchmark.plugin import Task
from benchmark.predictive import Predictor
from benchmark.profiles import get_profile
from benchmark.registry import create_model


def build(name: str, task: Task, device: torch.device) -> tuple[Predictor, torch.nn.Module]:
    """The registered plugin's network with random weights (seed 0), in eval mode, and its ``Predictor``."""
    plugin = create_model(name)
    torch.manual_seed(0)
    network = plugin.build(task).to(device).eval()
    return Predictor(network, plugin.predictive, num_classes=task.num_classes), network


def evaluation_point(predictor: Predictor, x: torch.Tensor, y: torch.Tensor, n: int, samples: int, eot: int,
                     batch_size: int, steps: int, reevals: int, eps: float, device: torch.device, seed: int) -> dict:
    """Seconds and peak GiB of the ``Evaluator``'s clean and pgd conditions at one point of the sweep (seconds
    ``"OOM"`` where it ran out of memory), by condition name."""
    plan = attack_plan(pgd_steps=steps, pgd_restarts=1, square_queries=5000, autoattack=True)
    profile = get_profile("standard", n_test=n, samples=samples, eot=eot, batch_size=batch_size, attacks=plan,
                          reevals=reevals)
    evaluator = Evaluator(predictor, x[:n], y[:n], profile, eps, device, seed)
    out = {}
    for condition in (Condition("clean"), Condition("pgd", eps)):
        reset_peak(device)
        try:
            _, seconds = timed(lambda condition=condition: evaluator.run(condition), device)
            out[condition.name] = (seconds, peak_gib(device))
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            out[condition.name] = ("OOM", peak_gib(device))
    return out


def sweep_points(base: dict, lists: dict) -> list[tuple[str, dict]]:
    """The base point, then each value of each list with the other settings at the base: (what varied, point)."""
    points = [("base", dict(base))]
    for key, values in lists.items():
        for v in values:
            if v != base[key]:
                points.append((key, {**base, key: v}))
    return points


def forward_costs(names: list[str], task: Task, x: torch.Tensor, y: torch.Tensor, samples: int, eot: int,
                  iters: int, device: torch.device) -> list[dict]:
    """Part 2: seconds of the deployed forward pass and of one input gradient per plugin, and each as a multiple
    of the baseline's."""
    results = []
    for name in names:
        predictor, network = build(name, task, device)
        draws_fwd = samples if predictor.is_random else 1
        draws_grad = eot if predictor.is_random else 1
        predictor.probs(x, draws_fwd), input_gradient(predictor, x, y, draws_grad)  # warm-up
        reset_peak(device)
        fwd = timed(lambda p=predictor, d=draws_fwd: [p.probs(x, d) for _ in range(iters)], device)[1] / iters
        grad = timed(lambda p=predictor, d=draws_grad: [input_gradient(p, x, y, d) for _ in range(iters)],
                     device)[1] / iters
        params = sum(p.numel() for p in network.parameters())
        results.append({"plugin": name, "kind": predictor.kind, "draws_fwd": draws_fwd, "draws_grad": draws_grad,
                        "forward_s": fwd, "gradient_s": grad, "peak_gib": peak_gib(device), "params": params})
    base = next((r for r in results if r["plugin"] == "baseline"), results[0])
    for r in results:
        r["forward_x_baseline"] = r["forward_s"] / base["forward_s"]
        r["gradient_x_baseline"] = r["gradient_s"] / base["gradient_s"]
    return results


def main(argv: list[str] | None = None) -> dict:
    """Run the sweep (part 1) and the plugin costs (part 2), print both tables and return their rows."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, n_cuda=1000, n_cpu=4, bs_cuda=250, bs_cpu=4)
    add_data_args(parser)
    parser.set_defaults(dataset="random")
    parser.add_argument("--plugin", default="mc-dropout", help="the stochastic plugin of part 1")
    parser.add_argument("--samples", type=int, default=None, help="base S (default: 32 on CUDA, 2 on CPU)")
    parser.add_argument("--eot", type=int, default=None, help="base K (default: 20 on CUDA, 2 on CPU)")
    parser.add_argument("--steps", type=int, default=None, help="PGD steps (default: 10 on CUDA, 1 on CPU)")
    parser.add_argument("--reevals", type=int, default=None, help="R (default: 5 on CUDA, 1 on CPU)")
    parser.add_argument("--eps", type=float, default=8.0, help="budget in units of 1/255")
    parser.add_argument("--n-list", type=int, nargs="*", default=None,
                        help="n values to sweep (default: 250 1000 4000 on CUDA, 8 on CPU)")
    parser.add_argument("--samples-list", type=int, nargs="*", default=None,
                        help="S values (default: 8 32 128 on CUDA, 4 on CPU)")
    parser.add_argument("--eot-list", type=int, nargs="*", default=None,
                        help="K values (default: 5 20 80 on CUDA, 4 on CPU)")
    parser.add_argument("--batch-list", type=int, nargs="*", default=None,
                        help="batch sizes (default: 100 250 1000 on CUDA, 2 on CPU)")
    parser.add_argument("--moment-plugins", nargs="*", default=["baseline", "mc-dropout", "endp", "vdp"],
                        help="plugins of part 2 (the baseline is the reference)")
    parser.add_argument("--iters", type=int, default=None,
                        help="timed passes per plugin in part 2 (default: 20 on CUDA, 2 on CPU)")
    parser.add_argument("--skip-sweep", action="store_true")
    args = parser.parse_args(argv)
    device = resolve(args)
    cuda = device.type == "cuda"

    def pick(value, on_cuda, on_cpu):
        return value if value is not None else (on_cuda if cuda else on_cpu)

    base = {"n": args.n, "samples": pick(args.samples, 32, 2), "eot": pick(args.eot, 20, 2), "batch": args.batch_size}
    lists = {"n": pick(args.n_list, [250, 1000, 4000], [8]), "samples": pick(args.samples_list, [8, 32, 128], [4]),
             "eot": pick(args.eot_list, [5, 20, 80], [4]), "batch": pick(args.batch_list, [100, 250, 1000], [2])}
    steps, reevals, iters = pick(args.steps, 10, 1), pick(args.reevals, 5, 1), pick(args.iters, 20, 2)
    eps = args.eps / 255

    n_max = max([base["n"], *lists["n"]])
    images = load_images(args.dataset, args.data_dir, n_max, torch.device("cpu"), args.seed)  # Evaluator moves batches
    task = Task("cifar10", (3, 32, 32), 10, 50000, "standard")
    print_header("scaling: evaluation time and peak memory; moment plugins against the baseline", device, [
        f"data: {images.label}; networks with random weights (timings only)",
        f"part 1: Evaluator on {args.plugin}, conditions clean and pgd "
        f"(PGD-{steps}, R={reevals}, eps {args.eps:g}/255)",
    ])
    out: dict = {"sweep": [], "plugins": []}
    if not args.skip_sweep:
        predictor, _ = build(args.plugin, task, device)
        evaluation_point(predictor, images.x, images.y, min(2, n_max), 1, 1, 2, 1, 1, eps, device, args.seed)  # warm-up
        rows = []
        for varied, point in sweep_points(base, lists):
            start = time.perf_counter()
            res = evaluation_point(predictor, images.x, images.y, point["n"], point["samples"], point["eot"],
                                   point["batch"], steps, reevals, eps, device, args.seed)
            sync(device)
            record = {"varied": varied, **point, **{f"{k}_s": v[0] for k, v in res.items()},
                      **{f"{k}_peak_gib": v[1] for k, v in res.items()}, "total_s": time.perf_counter() - start}
            out["sweep"].append(record)
            pgd_s = record["pgd_s"]
            rows.append([varied, point["n"], point["samples"], point["eot"], point["batch"], record["clean_s"],
                         record["clean_peak_gib"], pgd_s, point["n"] / pgd_s if isinstance(pgd_s, float) else "-",
                         record["pgd_peak_gib"]])
        print_table("part 1: Evaluator time and peak GPU memory (GiB; '-' on CPU)",
                    ["varied", "n", "S", "K", "batch", "clean s", "clean GiB", "pgd s", "pgd images/s", "pgd GiB"],
                    rows)

    x, y = images.x[: args.batch_size].to(device), images.y[: args.batch_size].to(device)
    costs = forward_costs(args.moment_plugins, task, x, y, base["samples"], base["eot"], iters, device)
    out["plugins"] = costs
    print_table(f"part 2: cost per batch of {len(y)} against the baseline "
                f"(forward: deployed rule with S={base['samples']} draws for stochastic plugins; "
                f"gradient: K={base['eot']})",
                ["plugin", "kind", "forward s", "x baseline", "gradient s", "x baseline", "peak GiB", "parameters"],
                [[r["plugin"], r["kind"], r["forward_s"], f"{r['forward_x_baseline']:.2f}x", r["gradient_s"],
                  f"{r['gradient_x_baseline']:.2f}x", r["peak_gib"], r["params"]] for r in costs])
    ooms = [r for r in out["sweep"] if "OOM" in (r.get("clean_s"), r.get("pgd_s"))]
    console.print(f"out-of-memory points: {len(ooms)}" + (" (target: none)" if ooms else ""))
    return out


if __name__ == "__main__":
    main()
