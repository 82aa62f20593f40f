"""Baseline-adv: the baseline CNN trained adversarially with PGD (Madry, Makelov, Schmidt, Tsipras, Vladu, "Towards
Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018, arXiv 1706.06083).

Madry et al.'s saddle-point objective, min_θ E max_{‖δ‖∞ ≤ ε} CE(f_θ(x + δ), y): every training batch is REPLACED
by L-inf PGD examples of the network being trained (not mixed 50/50 with clean ones as in Goodfellow et al. 2015:
Madry et al. train on adversarial examples only, and this row is the board's upper reference of empirical
robustness, which the mixture trades for clean accuracy). The inner maximisation (:func:`pgd_examples`, written
from the paper): a uniform random start in the ball, K signed-gradient ascent steps of size α on the batch's
cross-entropy, each projected back onto the ε-ball ∩ [0, 1] with the harness's projection
(``benchmark.attacks.base.project``), and the last iterate is trained on. The shared loop calls it through
``ModelPlugin.training_inputs``.

ε is the dataset's own L-inf budget, the one the harness attacks at (``Dataset.eps_linf``, passed to the plugin as
``Task.eps_linf``: 0.3 on MNIST, 0.1 on Fashion-MNIST, 8/255 on CIFAR-10 and a manifest dataset's ``eps_linf``);
a hand-made Task without it takes the built-in dataset table's value (mnist-5k: MNIST's).

Batch norm (the colour net has it): the attack runs the network in train mode, with batch statistics, so it
maximises the very loss the step then minimises (in eval mode it would follow the running statistics, which lag
far behind the weights early in training, and a model with dropout would attack another function), and the
network's buffers (running means and variances, batch counts) are restored after the attack, so the running
statistics see each training batch once, as the adversarial batch the step trains on, not the K intermediate
iterates. The one-channel net has no batch norm and is unaffected either way.

Recipe: the baseline's (:func:`benchmark.models.baseline.cnn_recipe`: Adam lr 1e-3, cosine; quick 2 epochs and
at least 900 steps, standard 20 epochs on one-channel images, 60 with weight decay 5e-4 on colour ones), with
PGD steps that the 2-core CPU affords, each costing a forward and a backward pass of the batch:

* standard: K = 7 steps of α = 2.5·ε/7, Madry et al.'s step rule (α = 2.5 ε / K, so that K steps can cross the
  ball from any start) with the step count of their CIFAR-10 training (7 steps of 2/255 at ε = 8/255); a
  training step costs about 8 plain ones.
* quick: K = 3 steps of α = 2.5·ε/3 (the same rule, fewer steps): a training step costs about 4 plain ones, so
  the quick budget stays within minutes on the CPU.

Departures, on purpose: the baseline's LeNet-like and VGG-style nets instead of Madry et al.'s wider MNIST net
(conv 32, conv 64, dense 1024) and their WideResNet; far fewer iterations (their MNIST model: 100,000 steps of
batch 50 with 40 PGD steps of 0.01; their CIFAR-10 model: 80,000 steps) and fewer PGD steps (above); Adam with
cosine decay instead of their optimisers and schedules; no ε warm-up (as the paper).
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.attacks.base import project
from benchmark.data.builtin import BUILTINS
from benchmark.errors import BenchmarkError
from benchmark.models.baseline import Baseline, cnn_recipe
from benchmark.plugin import Task, TrainConfig
from benchmark.registry import register_model

#: PGD steps per training batch on each profile (module docstring)
STEPS = {"quick": 3, "standard": 7}
#: α = STEP_SIZE · ε / K (Madry et al.)
STEP_SIZE = 2.5


def dataset_eps(task: Task) -> float:
    """The dataset's L-inf ε: the harness's (``Task.eps_linf``), else the built-in dataset table's."""
    if task.eps_linf is not None:
        return task.eps_linf
    builtin = BUILTINS.get("mnist" if task.dataset == "mnist-5k" else task.dataset)
    if builtin is None:
        raise BenchmarkError(f"baseline-adv trains at the dataset's eps, and the task for {task.dataset!r} "
                             "does not carry it (Task.eps_linf)")
    return builtin.eps_linf


def pgd_steps(task: Task) -> int:
    """PGD steps per training batch: the quick recipe's few, or the full recipe's (any other profile)."""
    return STEPS["quick" if task.profile == "quick" else "standard"]


def pgd_examples(network: nn.Module, x: Tensor, y: Tensor, eps: float, steps: int, step_size: float) -> Tensor:
    """Madry et al.'s PGD: uniform start in the ε-ball, ``steps`` steps of ``step_size``·sign(∇ₓ CE), each projected
    onto the ε-ball ∩ [0, 1]; the last iterate, detached. Runs the network in whatever mode it is in and leaves
    its buffers (batch-norm statistics) as they were; computes no parameter gradient."""
    buffers = [(b, b.clone()) for b in network.buffers()]
    x_adv = project(x + torch.empty_like(x).uniform_(-eps, eps), x, eps)
    try:
        for _ in range(steps):
            x_adv.requires_grad_(True)
            loss = F.cross_entropy(network(x_adv), y)
            (grad,) = torch.autograd.grad(loss, x_adv)
            x_adv = project(x_adv.detach() + step_size * grad.sign(), x, eps)
    finally:
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)
    return x_adv.detach()


@register_model("baseline-adv")
class BaselineAdv(Baseline):
    """The baseline CNN trained on L-inf PGD examples at the dataset's ε (Madry et al., ICLR 2018)."""

    summary = "baseline CNN adversarially trained with L-inf PGD at the dataset's eps (Madry et al. 2018)"

    def train_config(self, task: Task) -> TrainConfig:
        extra = {"adversarial": "pgd-linf", "train_eps": dataset_eps(task), "pgd_steps": pgd_steps(task),
                 "pgd_step_size": STEP_SIZE, "random_start": True, "clean_share": 0.0}
        return replace(cnn_recipe(task), extra=extra)

    def training_inputs(self, network: nn.Module, x: Tensor, y: Tensor, task: Task) -> Tensor:
        eps, steps = dataset_eps(task), pgd_steps(task)
        return pgd_examples(network, x, y, eps, steps, STEP_SIZE * eps / steps)
