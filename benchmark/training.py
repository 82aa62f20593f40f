"""The shared training loop: every plugin trains here with its own loss and recipe (and, through
``ModelPlugin.training_inputs``, its own training inputs: adversarial examples)."""

from __future__ import annotations

import math
import time

import torch
from torch import nn

from benchmark.data import to_float
from benchmark.errors import BenchmarkError
from benchmark.plugin import ModelPlugin, Task, TrainConfig
from benchmark.progress import console, progress_bar

#: fewer optimisation steps than this leave even the bundled plugins' small networks undertrained; a recipe that
#: asks for fewer (a small training set with no ``TrainConfig.min_steps``) is warned about, not changed
FEW_STEPS = 500


def make_optimizer(network: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The recipe's optimizer: SGD with Nesterov momentum, else AdamW (with weight decay) or Adam."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(network.parameters(), lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay, nesterov=True)
    return torch.optim.AdamW(network.parameters(), lr=config.lr, weight_decay=config.weight_decay) \
        if config.weight_decay else torch.optim.Adam(network.parameters(), lr=config.lr)


def train(plugin: ModelPlugin, network: nn.Module, x: torch.Tensor, y: torch.Tensor, task: Task,
          config: TrainConfig, device: torch.device, seed: int) -> float:
    """Train ``network`` in place on (x, y) (x uint8 or float in [0, 1], on any device); returns seconds."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    optimizer = make_optimizer(network, config)
    n = x.shape[0]
    steps_per_epoch = math.ceil(n / config.batch_size)
    epochs = max(config.epochs, math.ceil(config.min_steps / steps_per_epoch))
    total_steps = steps_per_epoch * epochs
    if total_steps < FEW_STEPS:
        console.print(f"[bold yellow]warning:[/] {plugin.name} trains for only {total_steps} optimisation steps "
                      f"({epochs} epoch(s) of {steps_per_epoch}), fewer than {FEW_STEPS}: the model may be "
                      "undertrained; give its TrainConfig a min_steps (the bundled plugins use 900)")
    schedule = ((lambda step: 0.5 * (1 + math.cos(math.pi * step / total_steps))) if config.lr_schedule == "cosine"
                else (lambda step: 1.0))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    network.train()
    start = time.perf_counter()
    with progress_bar() as bar:
        job = bar.add_task(f"train {plugin.name}", total=total_steps)
        for epoch in range(epochs):
            order = torch.randperm(n, generator=generator)
            running, seen = 0.0, 0
            for i in range(steps_per_epoch):
                idx = order[i * config.batch_size:(i + 1) * config.batch_size]
                xb = to_float(x[idx].to(device, non_blocking=True))
                yb = y[idx].to(device, non_blocking=True)
                plugin.before_step(network, (epoch * steps_per_epoch + i) / total_steps)
                if config.noise_sigma > 0:
                    xb = (xb + config.noise_sigma * torch.randn_like(xb)).clamp(0, 1)
                xb = plugin.training_inputs(network, xb, yb, task)
                loss = plugin.loss(network, network(xb), yb, task)
                if not torch.isfinite(loss):
                    raise BenchmarkError(f"training {plugin.name} diverged: loss {loss.item()} "
                                         f"at epoch {epoch + 1}, step {i + 1}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                running += loss.item() * len(idx)
                seen += len(idx)
                bar.update(job, advance=1,
                           description=f"train {plugin.name} epoch {epoch + 1}/{epochs} loss {running / seen:.4f}")
    plugin.finalize(network, x, y, task, config, device, seed)
    network.eval()
    return time.perf_counter() - start
