"""The plugin contract: what a model declares so that the harness can train, attack and evaluate it.

A plugin never decides how it is attacked or evaluated; it declares its *predictive kind* and the
harness applies the matching decision rule (docs/protocol.md; the output rules are checked by
``benchmark.outputs``):

=============  ==============================================  ==============================================
kind           ``network(x)`` returns                          deployed decision rule
=============  ==============================================  ==============================================
deterministic  logits ``[B, C]``                               argmax of the logits
stochastic     logits ``[B, C]`` of one random draw            argmax of the mean softmax of S draws
moments        ``(mean, var)`` of the logits, each ``[B, C]``  argmax of E[softmax(z)], z ~ N(mean, diag var)
ensemble       logits of every member ``[M, B, C]``            argmax of the mean softmax
=============  ==============================================  ==============================================

Each rule's predictive distribution is also what is scored (ECE, NLL, Brier, entropy) and attacked. A
moment model's is the expected softmax of its Gaussian logits, averaged over fixed quasi-random points
(``benchmark.predictive.gaussian_softmax_log_predictive``): deterministic and differentiable, it keeps
the variance the model propagates, which softmax(mean), the papers' first-order approximation, drops.

A stochastic network must draw fresh randomness on every call *whatever its train/eval mode*:
the harness puts networks in eval mode once after training (for batch norm), and that must not
switch the randomness off. Networks must not call ``backward`` or change grad mode in ``forward``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import ClassVar, Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.claim import Claim

PredictiveKind = Literal["deterministic", "stochastic", "moments", "ensemble"]
PREDICTIVE_KINDS: tuple[str, ...] = get_args(PredictiveKind)
#: the decision rule the harness deploys, scores and attacks for each kind, in words (reports and claims)
DECISION_RULES = {
    "deterministic": "argmax of the logits (one forward pass)",
    "stochastic": "argmax of the mean softmax over S draws; attack losses are the cross-entropy of the log of the "
                  "mean softmax over K draws (log-mean-exp of log-softmax), every draw batched into one pass",
    "moments": "argmax of E[softmax(z)], z ~ N(mean, diag var) of the propagated logits (not the papers' "
               "softmax(mean)); attacks follow its cross-entropy and, where the plugin has one, separately its own "
               "likelihood",
    "ensemble": "argmax of the members' mean softmax; attacks follow the cross-entropy of that mean",
}
#: the key of ``ModelPlugin.gradient_variants`` for the forward's true derivative (measured, not attacked through)
EXACT_GRADIENT = "exact"


@dataclass(frozen=True)
class Task:
    """What a plugin is asked to model: the dataset's shape, size and the profile's budget."""

    dataset: str
    input_shape: tuple[int, int, int]
    num_classes: int
    n_train: int
    profile: str = "quick"
    #: the dataset's L-inf budget (``Dataset.eps_linf``, what the harness attacks at), for recipes that train
    #: against it (adversarial training); ``None`` where the caller does not know the dataset (a hand-made Task)
    eps_linf: float | None = None

    @property
    def is_small_grayscale(self) -> bool:
        """MNIST-like inputs (one channel, 28x28) get the small CNNs; everything else the CIFAR nets."""
        return self.input_shape[0] == 1


#: the smallest image side a plugin with ``input_shapes = None`` builds for (the VGG-style net's three 2x2
#: pools must leave at least one pixel)
MIN_SIDE = 8


@dataclass(frozen=True)
class TrainConfig:
    """The recipe the shared training loop follows; part of the checkpoint cache key."""

    epochs: int
    batch_size: int = 128
    min_steps: int = 0  # small datasets (mnist-5k) get more epochs, so they see at least this many steps
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: Literal["adam", "sgd"] = "adam"
    momentum: float = 0.9
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    noise_sigma: float = 0.0  # std of Gaussian noise added to training inputs (noise-trained models)
    extra: dict = field(default_factory=dict)  # plugin-specific settings that must enter the cache key


class ModelPlugin:
    """Base class of every model plugin. Subclass it and decorate with ``@register_model("name")``.

    Override :meth:`build` (required), and :meth:`train_config` and :meth:`loss` where the method's
    paper prescribes its own recipe or objective (ELBO, Gaussian likelihood, ...).
    """

    name: ClassVar[str] = ""
    predictive: ClassVar[PredictiveKind] = "deterministic"
    #: input shapes (C, H, W) the plugin can build a network for; ``None`` means any image whose sides are at
    #: least :data:`MIN_SIDE` (with any number of classes from 2)
    input_shapes: ClassVar[tuple[tuple[int, int, int], ...] | None] = ((1, 28, 28), (3, 32, 32))
    #: why a plugin takes only its ``input_shapes``, shown by ``benchmark list``
    shapes_reason: ClassVar[str] = ""
    #: one line shown by ``benchmark list``
    summary: ClassVar[str] = ""
    #: how attacks get input gradients: "exact" autograd, or "surrogate" where the forward is not
    #: differentiable and the network's backward uses a surrogate (BPDA, e.g. spike functions); reported
    gradients: ClassVar[Literal["exact", "surrogate"]] = "exact"
    #: the network comes with published weights (:meth:`load_weights`) and is never trained here
    pretrained: ClassVar[bool] = False
    #: the published claims about this plugin's method (``benchmark.claim``), checked by ``benchmark claims``
    claims: ClassVar[tuple[Claim, ...]] = ()

    def build(self, task: Task) -> nn.Module:
        raise NotImplementedError(f"plugin {self.name!r} must implement build(task)")

    def train_config(self, task: Task) -> TrainConfig:
        """Default recipe: Adam, a few epochs on the quick profile, more on standard."""
        return TrainConfig(epochs=2 if task.profile == "quick" else 20, min_steps=900)

    def loss(self, network: nn.Module, output, y: torch.Tensor, task: Task) -> torch.Tensor:
        """Training objective for one batch. Defaults to cross-entropy per predictive kind."""
        if self.predictive == "moments":
            mean, _ = output
            return F.cross_entropy(mean, y)
        if self.predictive == "ensemble":
            # members are trained independently: the sum of their losses has independent gradients
            return sum(F.cross_entropy(member, y) for member in output)
        return F.cross_entropy(output, y)

    def load_weights(self, network: nn.Module, task: Task) -> str:
        """Load the published weights of a ``pretrained`` plugin into ``network``; return a short digest that
        identifies them (the run's training key)."""
        raise NotImplementedError(f"plugin {self.name!r} declares pretrained but has no load_weights")

    def before_step(self, network: nn.Module, progress: float) -> None:
        """Called before every training step with the fraction of training done, in [0, 1): for
        schedules the loss depends on (an epsilon warm-up, a KL annealing). Default: nothing."""

    def training_inputs(self, network: nn.Module, x: torch.Tensor, y: torch.Tensor, task: Task) -> torch.Tensor:
        """The inputs one training step feeds the network, from the batch ``x`` (float in [0, 1], after the
        recipe's ``noise_sigma`` noise) and its labels: for augmentations that need the network, e.g. the
        adversarial examples of adversarial training. Called by the shared loop after :meth:`before_step`,
        with the network in train mode; the result must have ``x``'s shape and lie in [0, 1], and is fed to
        the network as it is (return it detached unless the step should differentiate through it). A method
        that runs the network here must leave its buffers (batch-norm statistics) as it found them.
        Default: ``x`` unchanged."""
        return x

    def finalize(self, network: nn.Module, x: torch.Tensor, y: torch.Tensor, task: Task, config: TrainConfig,
                 device: torch.device, seed: int) -> None:
        """Called once after the shared training loop, on the same training data (x uint8 or float in
        [0, 1]), before the checkpoint is written: for post-hoc steps (SWA moment collection, a Laplace
        fit, a second SVI phase). Everything it computes must live in the network's parameters or
        buffers, so the checkpoint carries it. The network is still in train mode; counted in the
        training time. Default: nothing."""

    def likelihood(self, output, y: torch.Tensor, task: Task) -> torch.Tensor:
        """Per-example value of the plugin's own training likelihood, if it has one besides the
        cross-entropy (moment models): attacks then also follow it. Override to enable."""
        raise NotImplementedError

    def interval_logits(self, network: nn.Module, lower: torch.Tensor,
                        upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sound elementwise bounds ``(l, u)`` on the logits, ``[B, classes]`` each, of ONE fresh posterior
        draw (the same draw for the whole batch), valid for every input in the box [lower, upper]
        (``[B, C, H, W]``, inside [0, 1], float64 during certification): see ``benchmark.bounds``. The
        harness then runs the ``certify`` condition (docs/protocol.md). Override to enable."""
        raise NotImplementedError

    def surrogate(self, network: nn.Module) -> nn.Module | None:
        """A deterministic version of ``network`` returning logits (posterior-mean weights, dropout off),
        the source of the transfer attack. ``None``: the harness uses the baseline trained on the same data."""
        return None

    def deterministic_trunk(self, network: nn.Module) -> tuple[nn.Module, nn.Module] | None:
        """``(trunk, head)`` of a stochastic network whose randomness all lies after a deterministic trunk:
        ``head(trunk(x))`` computes ``network(x)`` (the same law), and ``trunk`` draws nothing. The harness then
        runs the trunk once per input and only the head once per draw: the S draws of the deployed rule and the
        K draws of every EOT step cost one trunk pass instead of S or K (MC dropout: the convolutions run once,
        the dropout head K times). The law of the draws, and so every number, is unchanged. Default: none."""
        return None

    def gradient_variants(self, network: nn.Module) -> dict[str, Callable[[], AbstractContextManager]]:
        """Other backward passes of a network whose ``gradients`` are surrogates (BPDA variants, Athalye, Carlini &
        Wagner, ICML 2018): name -> a function returning a context manager inside which ``network`` computes the
        same outputs and back-propagates through that variant. The training surrogate need not guide an attacker
        best, so attacks also run through each one (``pgd-bpda-<name>``). The key :data:`EXACT_GRADIENT` is the
        forward's true derivative (zero almost everywhere for spikes): not attacked through, it gives the
        diagnostics' ``exact_zero_grad_share``. Default: none."""
        return {}

    def supports(self, input_shape: tuple[int, int, int]) -> bool:
        if self.input_shapes is None:
            return min(input_shape[1:]) >= MIN_SIDE
        return tuple(input_shape) in {tuple(s) for s in self.input_shapes}

    def shapes_text(self) -> str:
        """The inputs the plugin takes, as ``benchmark list`` shows them."""
        if self.input_shapes is None:
            return f"any CxHxW, H and W >= {MIN_SIDE}"
        shapes = ", ".join("x".join(map(str, s)) for s in self.input_shapes)
        return f"{shapes} ({self.shapes_reason})" if self.shapes_reason else shapes
