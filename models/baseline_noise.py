"""Baseline-noise: the baseline CNN trained on Gaussian-noise-augmented inputs, KAP's ablation and the base
classifier of randomized smoothing (Cohen, Rosenfeld, Kolter, "Certified Adversarial Robustness via Randomized
Smoothing", ICML 2019, arXiv 1902.02918; Bashivan, Ibrahim, Dehghani, Ren, "Learning Robust Kernel Ensembles
with Kernel Average Pooling", arXiv 2210.00062, 2023).

The network is the baseline's (:func:`benchmark.layers.cnn.make_cnn`), the recipe the baseline's
(:func:`benchmark.models.baseline.cnn_recipe`), and every training batch gets the noise KAP trains with: x + σ·n,
n ~ N(0, I), clipped to [0, 1] (the shared loop's ``TrainConfig.noise_sigma``), with σ read from
:meth:`benchmark.models.kap.KAP.noise_sigma` (one definition: σ changes for both or for neither). Baseline,
baseline-noise and KAP then differ in one thing each: noise (baseline -> baseline-noise) and the channel mean
filter (baseline-noise -> KAP), so the board tells what KAP's robustness owes to its noise training.

Departures, on purpose:

* Deployed as a plain deterministic classifier (argmax of its logits on the clean input), not as Cohen et al.'s
  smoothed classifier g(x) = argmax_c P(f(x + δ) = c): the harness evaluates what the network computes, and the
  smoothed classifier with its Monte Carlo certificate is a different predictor (it would be a stochastic plugin
  of its own). This row is the base classifier f, trained as Cohen et al. train it.
* σ is KAP's (0.3 on one-channel 28x28 data, 0.1 on colour images, on the [0, 1] scale), not one of Cohen et
  al.'s ImageNet/CIFAR-10 grid (0.12, 0.25, 0.5, 1.0 on CIFAR-10); the noised input is clipped to [0, 1], as
  the shared loop does for KAP (Cohen et al. do not clip).
* The baseline's LeNet-like and VGG-style nets and epoch budget instead of the papers' ResNets.

Recipe (the baseline's, plus σ): quick: Adam lr 1e-3, cosine, 2 epochs, at least 900 steps; standard: 20
epochs (one-channel images) or 60 with weight decay 5e-4 (colour).
"""

from __future__ import annotations

from dataclasses import replace

from benchmark.models.baseline import Baseline, cnn_recipe
from benchmark.models.kap import KAP
from benchmark.plugin import Task, TrainConfig
from benchmark.registry import register_model


def noise_sigma(task: Task) -> float:
    """The training noise's std: KAP's, read from KAP's own definition."""
    return KAP().noise_sigma(task)


@register_model("baseline-noise")
class BaselineNoise(Baseline):
    """The baseline CNN trained with KAP's Gaussian input noise (Cohen et al. 2019's base classifier)."""

    summary = "baseline CNN trained on Gaussian-noise inputs, KAP's sigma (KAP's ablation; Cohen et al. 2019's base)"

    def train_config(self, task: Task) -> TrainConfig:
        return replace(cnn_recipe(task), noise_sigma=noise_sigma(task))
