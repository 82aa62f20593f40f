"""Check a plugin against the contract in ``benchmark.plugin`` before it reaches a leaderboard."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from benchmark.errors import PluginOutputError
from benchmark.outputs import checked_logits, expected_output, logits_of
from benchmark.plugin import ModelPlugin, Task
from benchmark.randomness import SHARED_CORRELATION, row_correlation

CHECK_SHAPES = ((1, 28, 28), (3, 32, 32))


@dataclass
class Check:
    """One contract check of a plugin: what was checked, whether it passed, and why not."""

    name: str
    ok: bool
    detail: str = ""
    blocking: bool = True  # False: a run can go on, and its diagnostics flag the problem instead


def _output_problem(kind: str, out, batch: int, classes: int) -> str | None:
    """Why ``out`` breaks the contract's output rule (``benchmark.outputs``), or None."""
    try:
        checked_logits(kind, out, batch, classes)
    except PluginOutputError as exc:
        return str(exc)
    if kind == "moments" and not bool((out[1] >= 0).all()):
        return "the variance has negative entries"
    return None


@torch.no_grad()
def _trunk_check(plugin: ModelPlugin, network: torch.nn.Module, x: torch.Tensor, label: str) -> Check:
    """A declared deterministic trunk must draw nothing (two passes agree), and head(trunk(x)) must be network(x)
    under the same seed: otherwise the draws the harness repeats through the head would not be the network's."""
    name = f"deterministic trunk({label})"
    split = plugin.deterministic_trunk(network)
    if split is None:
        return Check(name, True, "none declared")
    trunk, head = split
    try:
        first, second = trunk(x), trunk(x)
        with torch.random.fork_rng():  # the caller's generator state is left as it was
            torch.manual_seed(0)
            whole = logits_of(network(x))
            torch.manual_seed(0)
            split_out = logits_of(head(trunk(x)))
    except Exception as exc:
        return Check(name, False, f"{type(exc).__name__}: {exc}")
    if not torch.equal(first, second):
        return Check(name, False, "two passes of the declared trunk differ: it draws randomness, so the draws "
                                  "repeated through its head would share it; declare a shorter trunk or none")
    if whole.shape != split_out.shape or not torch.allclose(whole, split_out, rtol=1e-4, atol=1e-5):
        return Check(name, False, "head(trunk(x)) is not network(x) under the same random seed: the split must "
                                  "compute the same function with the same draws")
    return Check(name, True)


def validate_plugin(plugin: ModelPlugin, batch: int = 4, classes: int = 10,
                    shapes: tuple[tuple[int, int, int], ...] | None = None) -> list[Check]:
    """Build, run and differentiate the plugin's network on random inputs of each supported shape."""
    checks: list[Check] = []
    shapes = shapes or [s for s in CHECK_SHAPES if plugin.supports(s)] or list(plugin.input_shapes or ())[:1]
    if not shapes:
        return [Check("supported input shapes", False, "input_shapes is empty")]
    for shape in shapes:
        label = "x".join(map(str, shape))
        task = Task("validation", shape, classes, n_train=batch, profile="quick")
        try:
            network = plugin.build(task)
        except Exception as exc:
            checks.append(Check(f"build({label})", False, f"{type(exc).__name__}: {exc}"))
            continue
        if not isinstance(network, torch.nn.Module):
            checks.append(Check(f"build({label})", False, f"returned {type(network).__name__}, not an nn.Module"))
            continue
        checks.append(Check(f"build({label})", True))
        network.eval()
        x = torch.rand(batch, *shape, requires_grad=True)
        grad_mode = torch.is_grad_enabled()
        try:
            out = network(x)
        except Exception as exc:
            checks.append(Check(f"forward({label})", False, f"{type(exc).__name__}: {exc}"))
            continue
        problem = _output_problem(plugin.predictive, out, batch, classes)
        checks.append(Check(f"forward({label}) output", problem is None,
                            f"expected {expected_output(plugin.predictive, batch, classes)} for predictive="
                            f"{plugin.predictive}: {problem}"))
        if problem is not None:
            continue
        checks.append(Check(f"forward({label}) keeps grad mode", torch.is_grad_enabled() == grad_mode,
                            "forward must not change torch's grad mode"))
        checks.append(Check(f"forward({label}) calls no backward", all(p.grad is None for p in network.parameters()),
                            "parameters received gradients during forward"))
        checks.append(Check(f"forward({label}) finite", bool(torch.isfinite(logits_of(out)).all()),
                            "NaN or inf in the output"))
        logits = logits_of(out)
        projection = torch.randn(logits.shape, generator=torch.Generator().manual_seed(0))  # no class left out
        grad = torch.autograd.grad((logits * projection).sum(), x, allow_unused=True)[0]
        checks.append(Check(f"input gradient({label})", grad is not None and bool(torch.isfinite(grad).all()),
                            "attacks need a finite gradient with respect to the input"))
        moving = grad is not None and bool((grad.flatten(1) != 0).any(1).all())
        checks.append(Check(f"input gradient not all zero({label})", moving,
                            "the outputs do not change with the input for some examples (quantized or thresholded "
                            "inputs?): gradient attacks cannot move; robustness will rest on the black-box attacks",
                            blocking=False))
        with torch.no_grad():
            again = logits_of(network(x))
        same = torch.equal(logits_of(out).detach(), again)
        if plugin.predictive == "stochastic":
            checks.append(Check(f"randomness in eval mode({label})", not same,
                                "a stochastic plugin must draw fresh randomness on every call, also in eval mode",
                                blocking=False))
            correlation = row_correlation(network, x.detach())
            checks.append(Check(f"independent randomness per row({label})", not correlation > SHARED_CORRELATION,
                                f"copies of one input in one batch get outputs correlated at {correlation:.2f}: the "
                                "network shares one random draw across the batch, so the K EOT draws and S decision "
                                "draws the harness batches are really one; draw per example",
                                blocking=False))
            checks.append(_trunk_check(plugin, network, x.detach(), label))
        elif plugin.predictive in ("deterministic", "moments"):
            checks.append(Check(f"repeatable output({label})", same,
                                f"predictive={plugin.predictive} but two identical forward passes differ: "
                                f"declare it stochastic",
                                blocking=False))
        network.train()
        try:
            loss = plugin.loss(network, network(x.detach()), torch.randint(0, classes, (batch,)), task)
            ok = (isinstance(loss, torch.Tensor) and loss.dim() == 0 and bool(torch.isfinite(loss))
                  and loss.requires_grad)
            checks.append(Check(f"loss({label})", ok, "loss must be a finite scalar tensor with gradients"))
        except Exception as exc:
            checks.append(Check(f"loss({label})", False, f"{type(exc).__name__}: {exc}"))
    return checks
