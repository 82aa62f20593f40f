"""Clean accuracy of trained checkpoints on a whole test set, under each plugin's deployed decision rule.

A quick-profile run evaluates the first 500 test images only; this script measures what the plugins
reach on the full test set (10,000 images for MNIST), reusing the checkpoints those runs cached, so no
model is trained twice. For every model named, it loads the newest ``<out>/checkpoints/<dataset>-<model>-
<key>.safetensors`` (``<out>`` may also be a directory of per-model ``--out`` directories), predicts with
:class:`benchmark.predictive.Predictor` (S draws for stochastic models, as a run does) and prints one
row per model with the accuracy and its 95% interval (binomial, as the harness reports).

    python benchmarks/clean_accuracy.py --out /tmp/acc --data-dir DATA baseline endp bbb
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import torch
from common import console
from rich.table import Table

from benchmark.checkpoints import load_checkpoint
from benchmark.data import load_dataset, to_float
from benchmark.metrics import mean_interval
from benchmark.plugin import Task
from benchmark.predictive import Predictor
from benchmark.profiles import get_profile
from benchmark.registry import create_model, list_models
from benchmark.store import slug


def find_checkpoint(out: Path, dataset: str, model: str) -> Path:
    """The newest cached checkpoint of ``model`` under ``out/checkpoints`` or ``out/<model>/checkpoints``."""
    pattern = re.compile(rf"{re.escape(slug(dataset))}-{re.escape(slug(model))}-[0-9a-f]+\.safetensors")
    found = [p for d in (out / "checkpoints", out / model / "checkpoints") if d.is_dir()
             for p in d.iterdir() if pattern.fullmatch(p.name)]
    if not found:
        raise SystemExit(f"no checkpoint of {model} on {dataset} under {out}")
    return max(found, key=lambda p: p.stat().st_mtime)


def clean_accuracy(model: str, checkpoint: Path, x: torch.Tensor, y: torch.Tensor, task: Task, samples: int,
                   batch_size: int) -> tuple[int, int]:
    """(correct, total) of the deployed rule on ``x``."""
    plugin = create_model(model)
    network = plugin.build(task)
    load_checkpoint(network, checkpoint)
    network.eval()
    predictor = Predictor(network, plugin.predictive, num_classes=task.num_classes)
    draws = samples if predictor.is_random else 1
    torch.manual_seed(0)
    correct = 0
    for start in range(0, len(y), batch_size):
        p = predictor.probs(to_float(x[start:start + batch_size]), draws)
        correct += int((p.argmax(1) == y[start:start + batch_size]).sum())
    return correct, len(y)


def main(argv: list[str] | None = None) -> list[dict]:
    """Score each model's newest cached checkpoint on the test set, print the table and return its rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="registered plugin names (default: all)")
    parser.add_argument("--out", type=Path, default=Path("."),
                        help="the --out of the runs that cached the checkpoints")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--profile", default="quick",
                        help="the profile the checkpoints were trained under "
                             "(some plugins build by profile, e.g. snn's T)")
    parser.add_argument("--samples", type=int, default=None,
                        help="draws S of stochastic models (default: the profile's)")
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args(argv)

    profile = get_profile(args.profile)
    dataset = load_dataset(args.dataset, args.data_dir, download=False)
    task = Task(dataset.name, dataset.input_shape, dataset.num_classes, len(dataset.y_train), profile.name)
    table = Table(title=f"clean accuracy on the {len(dataset.y_test)} {dataset.name} test images")
    for column in ("model", "accuracy", "95% interval", "checkpoint", "seconds"):
        table.add_column(column)
    rows = []
    for model in args.models or list_models():
        checkpoint = find_checkpoint(args.out, dataset.name, model)
        start = time.perf_counter()
        correct, total = clean_accuracy(model, checkpoint, dataset.x_test, dataset.y_test, task,
                                        args.samples or profile.samples, args.batch_size)
        _, low, high = mean_interval([correct / total], total)
        table.add_row(model, f"{correct / total:.4f}", f"{low:.4f}-{high:.4f}", checkpoint.name,
                      f"{time.perf_counter() - start:.1f}")
        console.print(f"{model}: {correct}/{total} = {correct / total:.4f}")
        rows.append({"model": model, "correct": correct, "total": total, "checkpoint": checkpoint.name})
    console.print(table)
    return rows


if __name__ == "__main__":
    main()
