"""Evaluation conditions: clean data, the Gaussian noise sweep, attacks at each epsilon, diagnostics.

Each condition is computed independently from the trained network and a seed derived from the run seed
and the condition's id, so a resumed run recomputes exactly what an uninterrupted one would have.
Stochastic models are judged by their deployed rule over S draws; attacked with K-draw EOT; and their
final adversarial points re-evaluated R times with fresh randomness (DESIGN.md, evaluation protocol).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from benchmark.attacks import FGSM, PGD, Attack, AutoAttack, input_gradient
from benchmark.data import to_float
from benchmark.metrics import auroc, classification_metrics, mean_interval, predictive_entropy
from benchmark.predictive import Predictor
from benchmark.profiles import Profile
from benchmark.progress import progress_bar

ZERO_GRAD_TOLERANCE = 0.01  # share of inputs with an all-zero input gradient that raises `zero-grad`


@dataclass(frozen=True)
class Condition:
    name: str  # clean | noise | diagnostics | an attack name
    param: float | None = None  # sigma for noise, eps for attacks

    @property
    def id(self) -> str:
        return self.name if self.param is None else f"{self.name}-{self.param:.6g}"


def condition_seed(seed: int, condition: Condition) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}/{condition.id}".encode()).digest()[:4], "little")


class Evaluator:
    """Runs the conditions of one profile on one trained predictor and test set."""

    def __init__(self, predictor: Predictor, x: torch.Tensor, y: torch.Tensor, profile: Profile,
                 eps: float, device: torch.device, seed: int):
        self.predictor = predictor
        self.x, self.y = x, y
        self.profile = profile
        self.eps = eps
        self.device = device
        self.seed = seed
        random = predictor.is_random
        self.samples = profile.samples if random else 1
        self.eot = profile.eot if random else 1
        self.reevals = profile.reevals if random else 1
        self.attacks: dict[str, Attack] = {"fgsm": FGSM(), "pgd": PGD(steps=profile.pgd_steps, restarts=profile.pgd_restarts)}
        if profile.autoattack:
            self.attacks["autoattack"] = AutoAttack(seed=seed)

    @property
    def eps_sweep(self) -> list[float]:
        return sorted({f * self.eps for f in self.profile.eps_fractions} | {self.eps})

    def plan(self) -> list[Condition]:
        conditions = [Condition("clean"), Condition("diagnostics")]
        conditions += [Condition("noise", s) for s in self.profile.noise_sigmas if s > 0]
        conditions.append(Condition("fgsm", self.eps))
        conditions += [Condition("pgd", e) for e in self.eps_sweep]
        if "autoattack" in self.attacks:
            conditions.append(Condition("autoattack", self.eps))
        return conditions

    def attack_settings(self) -> dict:
        settings = {name: attack.settings() for name, attack in self.attacks.items()}
        if "autoattack" in settings:
            settings["autoattack"]["version"] = self.attacks["autoattack"].version_for(self.predictor)
        return settings

    def run(self, condition: Condition, clean_entropy: np.ndarray | None = None) -> tuple[list[dict], dict[str, np.ndarray]]:
        torch.manual_seed(condition_seed(self.seed, condition))
        if condition.name in ("clean", "noise"):
            return self._predictive(condition, clean_entropy)
        if condition.name == "diagnostics":
            return self._diagnostics(condition)
        return self._attack(condition)

    def _batches(self, label: str):
        n, bs = self.x.shape[0], self.profile.batch_size
        with progress_bar() as bar:
            job = bar.add_task(label, total=n)
            for start in range(0, n, bs):
                xb = to_float(self.x[start:start + bs].to(self.device))
                yb = self.y[start:start + bs].to(self.device)
                yield xb, yb
                bar.update(job, advance=len(yb))

    def _predictive(self, condition: Condition, clean_entropy: np.ndarray | None):
        sigma = condition.param or 0.0
        generator = torch.Generator(device="cpu").manual_seed(condition_seed(self.seed, condition))
        probs = []
        for xb, _ in self._batches(condition.id):
            if sigma > 0:
                noise = torch.randn(xb.shape, generator=generator).to(xb.device)
                xb = (xb + sigma * noise).clamp(0, 1)
            probs.append(self.predictor.probs(xb, self.samples).float().cpu())
        p = torch.cat(probs)
        y = self.y.cpu()
        metrics = classification_metrics(p, y)
        entropy = predictive_entropy(p)
        rows = [_row(condition.name, condition.param, k, v) for k, v in metrics.items()]
        if condition.name == "noise":
            metrics["auroc"] = auroc(torch.as_tensor(clean_entropy), entropy)
            rows.append(_row("noise", sigma, "auroc", metrics["auroc"]))
        arrays = {"probs": p.numpy(), "correct": (p.argmax(1) == y).numpy()[None, :], "entropy": entropy.numpy()}
        return rows, arrays

    def _diagnostics(self, condition: Condition):
        """Input gradients of the deployed rule at the clean points, and the raw output's range."""
        zero, nonfinite, prob_rows, n = 0, 0, 0, 0
        for xb, yb in self._batches("diagnostics"):
            grad = input_gradient(self.predictor, xb, yb, self.eot).grad.flatten(1)
            nonfinite += (~torch.isfinite(grad)).any(1).sum().item()
            zero += (grad.abs().sum(1) == 0).sum().item()
            with torch.no_grad():
                out = self.predictor.network(xb)
                out = out[0] if isinstance(out, tuple) else out
                sums_to_one = ((out.sum(-1) - 1).abs() < 1e-4) & (out.min(-1).values >= 0)
                prob_rows += sums_to_one.flatten().float().mean().item() * len(yb)
            n += len(yb)
        rows = [_row("diagnostics", None, "zero_grad_share", zero / n),
                _row("diagnostics", None, "nan_grad_share", nonfinite / n),
                _row("diagnostics", None, "probability_output_share", prob_rows / n)]
        return rows, {"n": np.array([n])}

    def _attack(self, condition: Condition):
        attack = self.attacks[condition.name]
        eps = float(condition.param)
        correct = []
        for xb, yb in self._batches(condition.id):
            x_adv = attack(self.predictor, xb, yb, eps, self.eot)
            if (x_adv - xb).abs().max() > eps + 1e-6 or x_adv.min() < 0 or x_adv.max() > 1:
                raise RuntimeError(f"{attack.name} left the eps-ball or [0, 1]: a bug in the attack")
            with torch.no_grad():
                correct.append(torch.stack([
                    self.predictor.probs(x_adv, self.samples).argmax(1) == yb for _ in range(self.reevals)
                ]).cpu())
        correct = torch.cat(correct, dim=1).numpy()
        return accuracy_rows(condition.name, eps, correct), {"correct": correct}


def accuracy_rows(name: str, param: float, correct: np.ndarray) -> list[dict]:
    """Rows for a [R, N] correctness array: mean over the R re-evaluations, its 95% interval, worst case."""
    per_run = correct.mean(axis=1)
    mean, low, high = mean_interval(list(per_run), correct.shape[1])
    worst = correct.all(axis=0).mean()
    return [_row(name, param, "accuracy", mean), _row(name, param, "accuracy_ci_low", low),
            _row(name, param, "accuracy_ci_high", high), _row(name, param, "accuracy_worst", worst)]


def _row(condition: str, param: float | None, metric: str, value: float) -> dict:
    return {"condition": condition, "param": param, "metric": metric, "value": float(value)}
