"""Test doubles and helpers: synthetic run directories shaped like the harness's output (for tests of reports
and leaderboards), a module wrapper that counts the rows it computes, and the threat model's checks."""

import json
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.metrics import reliability_table

SIGMAS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)
EPS_FRACTIONS = (0.25, 0.5, 1.0, 2.0)


class RowCounter(nn.Module):
    """The wrapped module, counting the rows it is asked to compute."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module, self.rows = module, 0

    def forward(self, x):
        self.rows += x.shape[0]
        return self.module(x)


def assert_in_threat_model(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> None:
    """``x_adv`` has the shape and dtype of ``x``, within its L-inf eps-ball (up to float rounding) and [0, 1]."""
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert (x_adv - x).abs().max().item() <= eps + 1e-6
    assert x_adv.min().item() >= 0.0 and x_adv.max().item() <= 1.0


def ball_samples(x: torch.Tensor, eps: float, n: int) -> torch.Tensor:
    """n points per input in the eps-ball intersected with [0, 1]: half uniform, half corners."""
    shape = (n, *x.shape)
    uniform = (torch.rand(shape, dtype=x.dtype) * 2 - 1) * eps
    corners = torch.randint(0, 2, shape).to(x.dtype) * 2 * eps - eps
    delta = torch.cat([uniform[: n // 2], corners[n // 2:]])
    return (x.unsqueeze(0) + delta).clamp(0, 1)


def make_run(run_dir: Path, model: str, dataset: str, attacks: tuple[str, ...], eps: float = 0.3) -> Path:
    """A run directory shaped like the harness's output, with plausible values."""
    run_dir.mkdir(parents=True)
    rows = [("clean", None, m, v) for m, v in
            {"accuracy": 0.9123, "ece": 0.0312, "nll": 0.2871, "brier": 0.1402, "entropy": 0.21}.items()]
    rows += [("diagnostics", None, "zero_grad_share", 0.0)]
    for s in SIGMAS:
        values = {"accuracy": 0.9123 - s, "ece": 0.03 + s / 4, "nll": 0.29 + s, "brier": 0.14 + s / 2,
                  "entropy": 0.21 + s, "auroc": 0.5 + s / 2}
        rows += [("noise", s, m, v) for m, v in values.items()]
    for name in (*attacks, "robust") if attacks else ():
        for e in [f * eps for f in EPS_FRACTIONS] if name in ("pgd", "robust") else (eps,):
            acc = max(0.0, 0.9 - 0.5 * e / eps - (0.02 if name == "robust" else 0.0))
            rows += [(name, e, "accuracy", acc), (name, e, "accuracy_ci_low", max(0.0, acc - 0.02)),
                     (name, e, "accuracy_ci_high", acc + 0.02), (name, e, "accuracy_worst", max(0.0, acc - 0.01))]
    pd.DataFrame(rows, columns=["condition", "param", "metric", "value"]).to_csv(run_dir / "metrics.csv", index=False)

    gen = torch.Generator().manual_seed(0)
    probs = (4 * torch.randn(400, 10, generator=gen)).softmax(dim=1)
    y = torch.where(torch.rand(400, generator=gen) < 0.8, probs.argmax(dim=1),
                    torch.randint(0, 10, (400,), generator=gen))
    reliability_table(probs, y).to_csv(run_dir / "reliability.csv", index=False)

    config = {
        "model": model, "dataset": dataset, "profile": "standard" if "autoattack" in attacks else "quick",
        "predictive": "stochastic", "samples": 8, "eot": 4, "reevals": 3, "n_examples": 400, "eps": eps,
        "threat": "Linf", "device": "cpu", "version": "0.1.0", "date": "2025-01-01T00:00:00+00:00", "seed": 0,
        "run_id": f"{dataset}-run", "notes": ["Dropout stays on at test time <on purpose>."],
        "attack_settings": {name: {"steps": 20, "restarts": 1, "step_size": 0.01} for name in attacks},
        "protocol": "standard" if "autoattack" in attacks else "quick",
    }
    (run_dir / "config.json").write_text(json.dumps(config))
    return run_dir


def make_finished_run(out: Path, model: str, dataset: str = "mnist", robust: float = 0.5,
                      protocol: str = "quick", robust_auc: float = 0.5, flags: str = "") -> Path:
    """A finished run under ``out/runs`` with a leaderboard row (summary.json), as ``benchmark run`` leaves it."""
    from benchmark.columns import EXTRA, SCHEMA

    run_id = f"{dataset}-{abs(hash((model, protocol))) % 10**8}-quick"
    run_dir = make_run(Path(out) / "runs" / run_id, model, dataset, ("fgsm", "pgd"), eps=0.1)
    row = {column: 0.5 for column in SCHEMA + EXTRA}
    row.update(model=model, dataset=dataset, profile="quick", threat="Linf", predictive="deterministic",
               attacks="fgsm+pgd", flags=flags, device="cpu", version="0.1.0", date="2025-01-01T00:00:00+00:00",
               robust_acc=robust, run_id=run_id, protocol=protocol, eps=0.1, robust_auc=robust_auc)
    (run_dir / "summary.json").write_text(json.dumps(row))
    return run_dir


def energy(x: torch.Tensor) -> torch.Tensor:
    """Sum of squared differences of neighbouring pixels: what a smooth image has little of and a signed-gradient
    perturbation a lot (the planted detectors' score)."""
    return ((x[..., 1:, :] - x[..., :-1, :]).pow(2).flatten(1).sum(1)
            + (x[..., :, 1:] - x[..., :, :-1]).pow(2).flatten(1).sum(1))


def planted_detector_data(n: int, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth 1x8x8 images (bilinear from 2x2) and smooth, blockwise linear class weights, which a smooth
    perturbation of eps 0.15 can flip: a detector of :func:`energy` can be evaded, but only by an attack that looks
    for it."""
    generator = torch.Generator().manual_seed(0)
    w = F.interpolate(torch.randn(classes, 1, 2, 2, generator=generator), size=8, mode="nearest").flatten(1)
    w = 320 * w / w.abs().sum(1, keepdim=True)
    x = F.interpolate(torch.rand(n, 1, 2, 2, generator=generator), size=8, mode="bilinear", align_corners=True)
    x = (0.5 + 0.6 * (x - 0.5) + 0.01 * torch.randn(n, 1, 8, 8, generator=generator)).clamp(0, 1)
    return x, w


class Tempered(nn.Module):
    """A planted detector: linear logits divided by a temperature 1 + k * energy, so the entropy rises with the
    input's high-frequency energy, which every signed-gradient attack adds."""

    def __init__(self, w: torch.Tensor, k: float = 20.0):
        super().__init__()
        self.w, self.k = w, k

    def forward(self, x):
        return (x.flatten(1) - 0.5) @ self.w.T / (1 + self.k * energy(x))[:, None]
