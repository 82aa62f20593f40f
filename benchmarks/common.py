"""What the speed benchmarks share: the reference ResNet-18, the data, a CUDA-synchronising timer and the table.

The reference model is the CIFAR-10 ResNet-18 checkpoint shipped inside the pyautoattack wheel
(``pyautoattack/examples/model_test.pt``, the model of AutoAttack's own example). That file is a plain
state dict of tensors (122 entries, kuangliu's ``ResNet18`` parameter names, no input normalisation); it
is read with ``torch.load(weights_only=True)`` through the harness's :func:`benchmark.checkpoints.read_state`,
which refuses anything that would need a full unpickler, and loaded with ``strict=True`` into the
architecture below, written here with the same parameter names.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from torch import nn

from benchmark.checkpoints import load_checkpoint, read_state
from benchmark.data import load_dataset, to_float
from benchmark.layers.cnn import make_cnn
from benchmark.plugin import Task

console = Console(width=None if Console().is_terminal else 160)

#: the data sets an attack benchmark accepts besides any name ``benchmark.data.load_dataset`` knows
RANDOM_DATASET = "random"


# --- the reference model ---------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """ResNet-18's residual block (two 3x3 conv + batch norm, a 1x1 projection shortcut when the shape changes)."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """CIFAR ResNet-18 (3x3 stem, no max-pool, 4x4 average pool), inputs in [0, 1] without normalisation."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        in_planes = 64
        for i, (planes, stride) in enumerate([(64, 1), (128, 2), (256, 2), (512, 2)], start=1):
            blocks = [BasicBlock(in_planes, planes, stride), BasicBlock(planes, planes, 1)]
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
            in_planes = planes
        self.linear = nn.Linear(512, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Everything before the last (linear) layer."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.features(x))


class TinyNet(nn.Module):
    """A small random CNN for plumbing tests of the scripts (``--model tiny``): no checkpoint, no meaning."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4),
                                      nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.linear = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.features(x))


def reference_checkpoint() -> Path:
    """``examples/model_test.pt`` inside the installed pyautoattack package."""
    spec = importlib.util.find_spec("pyautoattack")
    if spec is None or spec.origin is None:
        raise SystemExit("pyautoattack is not installed: pip install pyautoattack, or pass --checkpoint")
    return Path(spec.origin).parent / "examples" / "model_test.pt"


def load_model(name: str, device: torch.device, checkpoint: Path | None = None) -> nn.Module:
    """The benchmark model in eval mode on ``device``: ``resnet18`` (the checkpoint, strict), ``mnist-cnn`` (the
    harness's MNIST baseline CNN from a checkpoint ``benchmark run`` cached) or ``tiny`` (random)."""
    if name == "tiny":
        torch.manual_seed(0)
        return TinyNet().to(device).eval()
    if name == "mnist-cnn":
        if checkpoint is None:
            raise SystemExit("--model mnist-cnn needs --checkpoint: the safetensors file that `benchmark run --model "
                             "baseline --dataset mnist --profile quick --out OUT` caches under OUT/checkpoints")
        model = make_cnn(Task("mnist", (1, 28, 28), 10, 60000, "quick"))
        load_checkpoint(model, checkpoint)
        return model.to(device).eval()
    if name != "resnet18":
        raise SystemExit(f"unknown --model {name!r}: resnet18, mnist-cnn or tiny")
    state = read_state(checkpoint or reference_checkpoint())  # weights_only=True; refuses pickled objects
    model = ResNet18()
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


# --- data ------------------------------------------------------------------------------------------


@dataclass
class Images:
    """The images a benchmark attacks, their labels, and how to report them."""

    x: torch.Tensor  # float in [0, 1], contiguous NCHW, on the device
    y: torch.Tensor
    label: str  # what the figures were measured on, as it must be reported


def load_images(dataset: str, data_dir: str | None, n: int, device: torch.device, seed: int = 0) -> Images:
    """The first ``n`` test images of ``dataset`` (official order), or ``n`` uniform random images with
    random labels (``random``: timing only, accuracies then mean nothing)."""
    if dataset == RANDOM_DATASET:
        g = torch.Generator().manual_seed(seed)
        x, y = torch.rand(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)
        return Images(x.to(device), y.to(device), f"random uniform images (n={n}; timing only)")
    if dataset.startswith("npz:"):  # one test-split file, e.g. cifar10-jpeg's test npz alone (28 MB, no train files)
        path = Path(dataset[4:])
        with np.load(path) as arrays:
            x, y = torch.from_numpy(arrays["x_test"][:n]), torch.from_numpy(arrays["y_test"][:n].astype(np.int64))
        if x.shape[-1] == 3:  # NHWC -> NCHW
            x = x.permute(0, 3, 1, 2)
        return Images(to_float(x.contiguous()).to(device), y.reshape(-1).to(device),
                      f"{path.name} (x_test), first {len(y)} images")
    data = load_dataset(dataset, data_dir, download=False)
    x, y = data.x_test[:n], data.y_test[:n]
    if len(y) < n:
        console.print(f"[yellow]note:[/] {data.name} has only {len(y)} test images")
    label = f"{data.name}, first {len(y)} test images"
    if data.name != "cifar10":
        label += " (not the official CIFAR-10 pixels)" if "cifar10" in data.name else ""
    return Images(to_float(x).to(device).contiguous(), y.long().to(device), label)


# --- timing ----------------------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA only), so that a wall-clock reading covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> tuple[object, float]:
    """``fn()`` and its wall-clock seconds, with the device synchronised before and after."""
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - start


def reset_peak(device: torch.device) -> None:
    """Start a new peak-memory measurement for :func:`peak_gib` (CUDA only)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    """Peak allocated GPU memory since the last :func:`reset_peak`; ``None`` on CPU."""
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def batches(n: int, batch_size: int):
    """Slices of ``range(n)`` of ``batch_size`` items each, the last one shorter."""
    for start in range(0, n, batch_size):
        yield slice(start, min(n, start + batch_size))


@torch.no_grad()
def accuracy(predict: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor,
             batch_size: int) -> float:
    """Share of ``x`` whose argmax prediction is ``y``."""
    correct = sum((predict(x[sl]).argmax(-1) == y[sl]).sum().item() for sl in batches(len(y), batch_size))
    return correct / max(1, len(y))


#: the layouts and precisions a bare pass can run in; "channels_last" (fp32) is the harness's
VARIANTS = ("fp32", "channels_last", "bf16", "channels_last+bf16")
#: the variant a run evaluates in (benchmark.runner.evaluation_layout): the floors are measured in it
HARNESS = "channels_last"


def bare_passes(model: nn.Module, x: torch.Tensor, y: torch.Tensor, iters: int, batch_size: int, variant: str,
                device: torch.device, backward: bool = True) -> tuple[float, int]:
    """Seconds for ``iters`` bare passes, batch after batch through ``x`` (cyclically, the data an attack walks
    through, not one cache-warm batch again and again), and the images passed: input-gradient passes (the loss's
    forward and backward, nothing else), or with ``backward=False`` forward passes alone. No attack can pass
    images faster than these loops in the same ``variant`` (layout and precision)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {VARIANTS}")
    if "channels_last" in variant:  # weights and input both (a channels_last input alone gains nothing)
        model = copy.deepcopy(model).to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    slices = list(batches(len(y), batch_size))
    images = sum(len(y[slices[i % len(slices)]]) for i in range(iters))
    precision = torch.autocast(device.type, dtype=torch.bfloat16) if "bf16" in variant else contextlib.nullcontext()

    def loop():
        for i in range(iters):
            sl = slices[i % len(slices)]
            if not backward:
                with torch.no_grad(), precision:
                    model(x[sl])
                continue
            xg = x[sl].detach().requires_grad_(True)
            with precision:
                loss = F.cross_entropy(model(xg), y[sl], reduction="sum")
            torch.autograd.grad(loss, xg)

    return timed(loop, device)[1], images


# --- command line and output -----------------------------------------------------------------------


def add_common_args(parser: argparse.ArgumentParser, *, n_cuda: int, n_cpu: int, bs_cuda: int, bs_cpu: int) -> None:
    """``--device``, ``--n``, ``--batch-size`` and ``--seed``, with the size defaults per device that
    :func:`resolve` fills in."""
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--n", type=int, default=None, help=f"images (default: {n_cuda} on CUDA, {n_cpu} on CPU)")
    parser.add_argument("--batch-size", type=int, default=None, help=f"(default: {bs_cuda} on CUDA, {bs_cpu} on CPU)")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(_sizes=(n_cuda, n_cpu, bs_cuda, bs_cpu))


def add_data_args(parser: argparse.ArgumentParser) -> None:
    """``--dataset`` and ``--data-dir``, read by :func:`load_images`."""
    parser.add_argument("--dataset", default="cifar10",
                        help="a name benchmark.data.load_dataset knows (cifar10, or a manifest data set such as "
                             "cifar10-jpeg under --data-dir), npz:PATH (x_test/y_test of one npz file), or 'random' "
                             "(timing only)")
    parser.add_argument("--data-dir", default=None, help="directory holding the data set (e.g. DATA)")


def add_quick_plugin_args(parser: argparse.ArgumentParser, plugin: str, n: int, eps: float) -> None:
    """The arguments of the scripts that attack a registered plugin trained with its quick recipe
    (``autoattack_crosscheck.trained``): which plugin on which images at which eps, and where its checkpoint is
    cached."""
    parser.add_argument("--plugin", default=plugin)
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--n", type=int, default=n, help="the first N test images")
    parser.add_argument("--eps", type=float, default=eps)
    parser.add_argument("--cache", type=Path, default=Path("results"), help="where the quick checkpoints are cached")
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs (smoke runs only)")
    parser.add_argument("--seed", type=int, default=0)


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """``--model`` and ``--checkpoint``, read by :func:`load_model`."""
    parser.add_argument("--model", default="resnet18", choices=["resnet18", "mnist-cnn", "tiny"],
                        help="resnet18: pyautoattack's CIFAR-10 checkpoint; mnist-cnn: the harness's MNIST baseline "
                             "(--checkpoint); tiny: random small CNN (plumbing tests)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="state dict for resnet18 (default: pyautoattack/examples/model_test.pt), or the "
                             "safetensors checkpoint of mnist-cnn")


def resolve(args: argparse.Namespace) -> torch.device:
    """Fill the size defaults for the chosen device; returns the device."""
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but CUDA is not available")
    n_cuda, n_cpu, bs_cuda, bs_cpu = args._sizes
    cuda = device.type == "cuda"
    if args.n is None:
        args.n = n_cuda if cuda else n_cpu
    if args.batch_size is None:
        args.batch_size = bs_cuda if cuda else bs_cpu
    args.batch_size = max(1, min(args.batch_size, args.n))
    torch.manual_seed(args.seed)
    return device


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(device: torch.device) -> str:
    """The device, and the torch (and CUDA) version, as the header of every benchmark reports them."""
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return (f"{props.name} ({props.total_memory / 2**30:.0f} GiB), "
                f"torch {torch.__version__}, CUDA {torch.version.cuda}")
    return (f"CPU {_cpu_name()}, {os.cpu_count()} cores, "
            f"{torch.get_num_threads()} torch threads, torch {torch.__version__}")


def print_header(title: str, device: torch.device, lines: Sequence[str] = ()) -> None:
    """Print the benchmark's title, the hardware and then ``lines`` (model, data, settings)."""
    console.print(f"[bold]{title}[/]")
    console.print(f"hardware: {hardware(device)}")
    for line in lines:
        console.print(line)


def fmt(value, spec: str = ".3g") -> str:
    """A table cell: ``-`` for None, strings as they are, integers with thousands separators, else ``spec``."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return f"{value:,}"
    return format(value, spec)


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence]) -> None:
    """Print ``rows`` as a rich table, the first column left-aligned, the others right-aligned, cells by :func:`fmt`."""
    table = Table(title=title, title_justify="left")
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*[fmt(v) for v in row])
    console.print(table)
