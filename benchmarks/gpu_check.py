"""Every speed figure of benchmarks/ in one go, and one summary table: the script ``gpu_check.sh`` runs.

On a GPU (``--sizes gpu``, the default where CUDA is present) each script runs at sizes chosen to fit
the whole check in about eight minutes on one H100: the reference ResNet-18 on 1,000 images for PGD-100,
APGD-CE and AutoAttack against torchattacks and pyautoattack (eps 8/255 and 1/255), the bare
forward+backward floor, EOT with K = 20 against pyautoattack ``rand`` on 250 images, and a reduced
scaling sweep. ``--sizes tiny`` runs the same scripts at plumbing sizes on the CPU (a tiny random net,
random images) in well under a minute: CI runs it, so the check cannot rot between GPU sessions.

Each script prints its own tables as it goes; the summary at the end has one line per headline figure
and the seconds each script took. Data: ``--dataset``/``--data-dir`` as the scripts take them (GPU
sizes need real images: cifar10, or the cifar10-jpeg copy, reported as such).

    bash benchmarks/gpu_check.sh --dataset cifar10-jpeg --data-dir DATA     # one H100
    bash benchmarks/gpu_check.sh --sizes tiny                               # CPU plumbing check
"""

from __future__ import annotations

import argparse
import time

import attack_speed
import eot_speed
import limit
import scaling
import torch
from common import console, print_table


def plan(sizes: str, data: list[str]) -> dict[str, list[str]]:
    """Each script's arguments at ``sizes``."""
    if sizes == "tiny":
        tiny = ["--device", "cpu", "--dataset", "random"]
        return {
            "attack_speed": [*tiny, "--model", "tiny", "--n", "4", "--steps", "2", "--eps", "8", "--seed", "1"],
            "limit": [*tiny, "--model", "tiny", "--n", "4", "--steps", "2", "--iters", "2", "--repeats", "1"],
            "eot_speed": [*tiny, "--network", "tiny-dropout", "--n", "4", "--eot", "2", "--samples", "2",
                          "--iters", "2"],
            "scaling": ["--device", "cpu", "--n", "2", "--batch-size", "2", "--samples", "1", "--eot", "1",
                        "--steps", "1", "--n-list", "--samples-list", "2", "--eot-list", "--batch-list",
                        "--moment-plugins", "baseline", "vdp", "--iters", "1"],
        }
    return {
        "attack_speed": [*data, "--n", "1000", "--batch-size", "500", "--steps", "100", "--eps", "8", "1"],
        "limit": [*data, "--n", "1000", "--batch-size", "500", "--steps", "100", "--iters", "50"],
        "eot_speed": [*data, "--network", "resnet18-dropout", "--n", "250", "--batch-size", "250", "--eot", "20",
                      "--samples", "32", "--iters", "100"],
        "scaling": ["--n-list", "500", "2000", "--samples-list", "64", "--eot-list", "40", "--batch-list", "500"],
    }


def headlines(name: str, result) -> list[list[str]]:
    """The summary lines of one script's returned rows."""
    if name == "attack_speed":
        return [[name, f"{r['label']} at {r['eps']:g}/255",
                 f"{r['speedup']:.2f}x faster, robust acc {r['robust_acc_delta_pp']:+.1f} pp vs reference"]
                for r in result if r["speedup"] is not None]
    if name == "limit":
        full, active = result[-2], result[-1]
        return [[name, full["method"], f"{full['fraction_of_floor']:.1%} of the bare forward+backward throughput"],
                [name, active["method"], f"{active['seconds'] / full['seconds']:.1%} of the time of every example"]]
    if name == "eot_speed":
        harness, reference = result[0], result[-1]
        return [[name, harness["method"], f"{harness['speedup']:.2f}x faster than pyautoattack rand; "
                 f"robust acc {harness['robust_acc']:.1%} vs {reference['robust_acc']:.1%}"]]
    ooms = sum("OOM" in (r.get("clean_s"), r.get("pgd_s")) for r in result["sweep"])
    return [[name, f"{len(result['sweep'])} sweep points, {len(result['plugins'])} plugins",
             f"{ooms} out of memory"]]


def main(argv: list[str] | None = None) -> list[list[str]]:
    """Run every speed script at the chosen sizes and print one summary table; return its rows."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", choices=["gpu", "tiny"], default=None,
                        help="gpu: the real sizes (default where CUDA is present); tiny: CPU plumbing sizes")
    parser.add_argument("--dataset", default="cifar10", help="as the scripts take it (gpu sizes)")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    sizes = args.sizes or ("gpu" if torch.cuda.is_available() else "tiny")
    data = ["--dataset", args.dataset] + (["--data-dir", args.data_dir] if args.data_dir else [])
    scripts = {"attack_speed": attack_speed.main, "limit": limit.main, "eot_speed": eot_speed.main,
               "scaling": scaling.main}
    rows = []
    for name, arguments in plan(sizes, data).items():
        console.rule(f"{name} {' '.join(arguments)}")
        start = time.perf_counter()
        result = scripts[name](arguments)
        seconds = time.perf_counter() - start
        rows += headlines(name, result)
        rows.append([name, "wall time of the script", f"{seconds:.0f} s"])
    print_table(f"gpu_check ({sizes} sizes)", ["script", "figure", "value"], rows)
    return rows


if __name__ == "__main__":
    main()
