"""One benchmark run: resolve, train (or reuse the cached checkpoint), evaluate, store, publish."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmark import __version__
from benchmark.checkpoints import CACHED_FILE_FIX, load_checkpoint, load_state, read_state, save_checkpoint
from benchmark.data import load_dataset
from benchmark.data.ood import OutOfDistribution, load_out_of_distribution
from benchmark.distributed import World, world_from_env
from benchmark.errors import BenchmarkError, PluginOutputError
from benchmark.evaluation import Evaluator
from benchmark.names import CLEAN, EVADED, SECONDS, metric_row
from benchmark.plugin import ModelPlugin, Task
from benchmark.predictive import Predictor
from benchmark.profiles import get_profile
from benchmark.progress import console
from benchmark.registry import create_model, plugin_source_hash
from benchmark.render import interval_text
from benchmark.results import RunResults, summary_row
from benchmark.scoring import write_metrics
from benchmark.store import DEFAULT_OUT, RunStore, identity, slug
from benchmark.training import train
from benchmark.validate import validate_plugin


@dataclass
class RunRequest:
    """Everything ``benchmark run`` accepts; the CLI maps its options onto this one-to-one."""

    model: str
    dataset: str = "mnist"
    profile: str | None = None  # None: standard on a GPU, quick on the CPU
    device: str = "auto"
    data_dir: Path | None = None
    seed: int = 0
    out: Path = DEFAULT_OUT
    retrain: bool = False
    checkpoint: Path | None = None
    eps: float | None = None
    n_test: int | None = None
    n_train: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    download: bool = True
    model_dir: Path | None = None  # where robustbench:<ModelName> weights are kept (default: zoo.default_model_dir)


def resolve_device(name: str) -> torch.device:
    """The torch device for ``--device`` (auto: the GPU if one is visible); one that cannot run is refused here,
    before any training."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BenchmarkError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise BenchmarkError(f"unknown device {name!r}; use auto, cpu or cuda") from exc
    if device.type not in ("cpu", "cuda") or (device.type == "cpu" and device.index not in (None, 0)):
        raise BenchmarkError(f"unsupported device {name!r}; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise BenchmarkError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    return device


def describe_device(device: torch.device) -> str:
    """The hardware a run used, as recorded in its config and leaderboard row: the GPU's name, or the CPU's model
    and the threads torch used."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({cpu_model()}, {torch.get_num_threads()} threads)"


def cpu_model() -> str:
    """The CPU's model name as the operating system reports it (Linux: /proc/cpuinfo), else the platform's."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _data_digest(*tensors: torch.Tensor) -> str:
    """The images and labels a run trains and is evaluated on, as one digest: the run's identity follows the
    data itself, not the path it was read from."""
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def run(request: RunRequest) -> dict:
    """Execute a run and return its leaderboard row (on every rank when started by torchrun)."""
    if request.eps is not None and not 0.0 <= request.eps <= 1.0:
        raise BenchmarkError(f"--eps must lie in [0, 1] (inputs are scaled to [0, 1]); got {request.eps}")
    if not 0 <= request.seed < 2**32:
        raise BenchmarkError(f"--seed must lie in [0, 2**32); got {request.seed}")
    plugin = create_model(request.model, model_dir=request.model_dir)
    world = world_from_env()
    device = resolve_device(request.device)
    profile = get_profile(request.profile or ("standard" if device.type == "cuda" else "quick"),
                          n_test=request.n_test, n_train=request.n_train, epochs=request.epochs,
                          batch_size=request.batch_size)
    # a given checkpoint is read before the data, so an unusable file is one line before any download is tried
    given = (world.on_main(lambda: read_state(request.checkpoint), share=False)
             if request.checkpoint is not None else None)
    # rank 0 first, so a download happens once per node-shared cache; then the others
    dataset = (world.on_main(lambda: load_dataset(request.dataset, request.data_dir, download=request.download),
                             share=False)
               or load_dataset(request.dataset, request.data_dir, download=request.download))
    if dataset.note:
        console.print(f"[bold yellow]warning:[/] {dataset.note}")
    if not plugin.supports(dataset.input_shape):
        raise BenchmarkError(f"plugin {plugin.name!r} does not support input shape {dataset.input_shape} "
                             f"of {dataset.name}")
    failed = [c for c in validate_plugin(plugin, classes=dataset.num_classes, shapes=(dataset.input_shape,))
              if not c.ok]
    for check in failed:
        if check.blocking:
            raise BenchmarkError(f"plugin {plugin.name!r} breaks the contract: {check.name}: {check.detail} "
                                 f"(see `benchmark validate-plugin`)")
        console.print(f"[bold yellow]warning:[/] plugin {plugin.name!r}: {check.detail}; "
                      f"the run goes on and its diagnostics will flag it")
    eps = dataset.eps_linf if request.eps is None else request.eps

    x_train, y_train = dataset.x_train[: profile.n_train], dataset.y_train[: profile.n_train]
    x_test, y_test = dataset.x_test[: profile.n_test], dataset.y_test[: profile.n_test]
    task = Task(dataset.name, dataset.input_shape, dataset.num_classes, len(y_train), profile.recipe,
                eps_linf=dataset.eps_linf)
    network, train_seconds, train_key, recipe = _trained(plugin, request, task, x_train, y_train, device,
                                                         given, profile.epochs, world)
    config = {
        "model": plugin.name, "dataset": dataset.name, "dataset_source": dataset.source, "profile": profile.name,
        "predictive": plugin.predictive, "gradients": plugin.gradients, "seed": request.seed, "eps": eps,
        "threat": "Linf", "n_examples": len(y_test), "n_train": len(y_train), "num_classes": dataset.num_classes,
        "train_key": train_key, "recipe": dataclasses.asdict(recipe), "profile_settings": profile.as_dict(),
        "version": __version__,
        "device": describe_device(device) + (f" x {world.size} processes" if world.size > 1 else ""),
        "dataset_description": dataset.description, "notes": [dataset.note] if dataset.note else [],
        "data_sha256": _data_digest(x_train, y_train, x_test, y_test),
        "protocol": profile.protocol(eps, dataset.eps_linf, given_weights=request.checkpoint is not None),
        "training": ("given weights" if request.checkpoint is not None else "published weights" if plugin.pretrained
                     else "short recipe" if profile.recipe == "quick" else "full recipe"),
    }
    ood = _out_of_distribution(dataset, len(y_test), request, world)
    config["ood"] = ood.name if isinstance(ood, OutOfDistribution) else f"not run: {ood}"
    surrogate = plugin.surrogate(network)
    if surrogate is not None:
        surrogate = (f"{plugin.name}'s deterministic surrogate", Predictor(surrogate, "deterministic"))
    elif plugin.name != "baseline" and create_model("baseline").supports(dataset.input_shape):
        baseline = _trained(create_model("baseline"), request, task, x_train, y_train, device, None, profile.epochs,
                            world)[0]
        surrogate = ("baseline trained on the same data", Predictor(baseline, "deterministic"))
    # else no surrogate: the transfer attack is recorded as not applicable, like any attack a model cannot get
    likelihood = None
    if type(plugin).likelihood is not ModelPlugin.likelihood:
        def likelihood(out, y):
            return plugin.likelihood(out, y, task)

    bounds = None  # plugins with sound interval bounds get the certify condition
    if type(plugin).interval_logits is not ModelPlugin.interval_logits:
        def bounds(lower, upper):
            return plugin.interval_logits(network, lower, upper)

    trunk = plugin.deterministic_trunk(network) if plugin.predictive == "stochastic" else None
    evaluator = Evaluator(Predictor(network, plugin.predictive, likelihood=likelihood, num_classes=dataset.num_classes,
                                    trunk=trunk),
                          x_test, y_test, profile, eps, device, request.seed, surrogate=surrogate, world=world,
                          bounds=bounds, gradient_variants=plugin.gradient_variants(network),
                          ood=ood if isinstance(ood, OutOfDistribution) else None)
    config.update(samples=evaluator.samples, eot=evaluator.eot, reevals=evaluator.reevals,
                  attack_settings=evaluator.attack_settings(), attacks_not_applicable=evaluator.not_applicable)
    run_id = f"{slug(dataset.name)}-{slug(plugin.name)}-{profile.name}-{_digest(identity(config))}"
    store = RunStore(Path(request.out) / "runs" / run_id)
    date = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    world.on_main(lambda: store.write_config({**config, "run_id": run_id, "date": date}))

    _evaluate(evaluator, store, plugin.name, world)
    row = world.on_main(lambda: _finish(evaluator, store, network, train_seconds))
    from benchmark.leaderboard import publish  # rendering imports plotting libraries: only when needed

    world.on_main(lambda: publish(Path(request.out), dataset.name, plugin.name))
    return row


def _out_of_distribution(dataset, n: int, request, world: World) -> OutOfDistribution | str:
    """The dataset's out-of-distribution partner (``benchmark.data.ood``), or why there is none: a missing partner
    costs the run its ``ood`` condition and a warning, never the run."""
    def load():
        try:
            return load_out_of_distribution(dataset, n, request.data_dir, download=request.download)
        except BenchmarkError as exc:
            return str(exc)

    ood = world.on_main(load, share=False) or load()
    if not isinstance(ood, OutOfDistribution):
        console.print(f"[bold yellow]warning:[/] no out-of-distribution condition: {ood}")
    return ood


def _finish(evaluator: Evaluator, store: RunStore, network, train_seconds: float) -> dict:
    """Score the stored conditions and write the run's leaderboard row; return the row."""
    write_metrics(evaluator, store)
    row = summary_row(store.config(), RunResults.read(store.root), sum(p.numel() for p in network.parameters()),
                      train_seconds)
    store.write_summary(row)
    return row


def _trained(plugin: ModelPlugin, request: RunRequest, task: Task, x, y, device, given: dict | None,
             epochs: int | None, world: World = World()):
    """The plugin's network, trained or loaded (by rank 0, then shared), in eval mode and the evaluation layout
    (:func:`evaluation_layout`); with its training time, cache key and recipe. ``given``: the tensors of
    ``--checkpoint``, read already (on rank 0), or None."""
    recipe = plugin.train_config(task)
    if epochs is not None:  # an explicit --epochs is taken literally
        recipe = dataclasses.replace(recipe, epochs=epochs, min_steps=0)
    torch.manual_seed(request.seed)
    network = plugin.build(task).to(device)
    if plugin.pretrained and request.checkpoint is None:  # a RobustBench zoo model's published weights: no training
        key, seconds = world.on_main(lambda: plugin.load_weights(network, task)), 0.0
    else:
        key = _digest({"plugin": plugin.name, "code": plugin_source_hash(plugin), "version": __version__,
                       "dataset": task.dataset, "n_train": len(y), "recipe": dataclasses.asdict(recipe),
                       "seed": request.seed})

        def train_or_load() -> float:
            if given is not None:  # the plugin's given weights; its transfer surrogate (given None) is trained
                load_state(network, given, request.checkpoint)
                return 0.0
            return _train_or_load(plugin, network, request, task, recipe, x, y, device, key)

        seconds = world.on_main(train_or_load)
    world.broadcast_weights(network)
    return evaluation_layout(network.eval()), seconds, key, recipe


def evaluation_layout(network: torch.nn.Module) -> torch.nn.Module:
    """``network`` with its 4-D weights in the channels_last layout (in place, after any checkpoint was saved), so
    its convolutions, and the pooling after them, run in it: on a 2-core Xeon CPU (torch 2.14, oneDNN) the MNIST
    CNN's forward pass ran 1.5-2x and its input gradient 1.25-1.5x faster, bbb's forward 1.7x; KAP's pooling
    kernels alone ran 5% slower. The numbers are the same up to float rounding (2e-7 on the baseline's log
    probabilities); a resumed run lays its network out the same way, so it recomputes the same points."""
    return network.to(memory_format=torch.channels_last)


def _train_or_load(plugin: ModelPlugin, network, request: RunRequest, task: Task, recipe, x, y, device,
                   key: str) -> float:
    path = Path(request.out) / "checkpoints" / f"{slug(task.dataset)}-{slug(plugin.name)}-{key}.safetensors"
    if path.exists() and not request.retrain:
        load_checkpoint(network, path, CACHED_FILE_FIX)
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            seconds = float((handle.metadata() or {}).get("train_seconds", "nan"))
        console.print(f"reusing checkpoint {path}")
        return seconds
    seconds = train(plugin, network, x, y, task, recipe, device, request.seed)
    save_checkpoint(network, path, {"train_seconds": f"{seconds:.3f}", "plugin": plugin.name, "dataset": task.dataset})
    read_state(path, CACHED_FILE_FIX)  # refuse to go on with a checkpoint that would not load next time
    return seconds


def _evaluate(evaluator: Evaluator, store: RunStore, model: str, world: World = World()) -> None:
    """Run every condition not finished earlier; rank 0 stores each as it finishes. A condition the
    plugin makes fail is recorded with its error and the run goes on with the others."""
    finished: dict[str, dict[str, np.ndarray]] = {}
    evaluator.load = finished.get  # None for a failed condition
    clean_entropy = None
    plan = evaluator.plan()
    for number, condition in enumerate(plan, start=1):
        stored = world.on_main(lambda condition=condition: _stored(store, condition.id))
        if stored is not None:
            console.print(f"[dim]{condition.id}: done earlier, reusing[/]")
            error, arrays = stored
        else:
            start = time.perf_counter()
            try:
                rows, arrays = evaluator.run(condition, clean_entropy)
                error = None
            except PluginOutputError as exc:
                error, arrays = str(exc), None
            if error is None:
                seconds = time.perf_counter() - start
                rows.append(metric_row(condition.name, condition.param, SECONDS, seconds))
                world.on_main(lambda condition=condition, rows=rows, arrays=arrays:
                              store.save_condition(condition.id, rows, arrays))
                console.print(f"{condition.id}: {finished_text(rows, seconds)} ({number}/{len(plan)})")
            else:
                world.on_main(lambda condition=condition, error=error: store.save_failure(condition.id, error))
        if error is not None:
            console.print(f"[bold red]plugin {model!r} failed in condition {condition.id}:[/] {error} "
                          "(recorded; the run goes on)")
            continue
        finished[condition.id] = arrays
        if condition.name == CLEAN:
            clean_entropy = arrays["entropy"]


def finished_text(rows: list[dict], seconds: float) -> str:
    """One condition's headline as a run's log prints it once the condition is stored: its accuracy (or
    certified accuracy) with the 95% interval, and the seconds it took. A board left running in the
    background then shows in its log how far it got, where a terminal's progress bars would have gone."""
    values = {row["metric"]: row["value"] for row in rows}
    for name in ("accuracy", "certified_acc", EVADED):
        if name in values:
            text = interval_text(values[name], values.get(f"{name}_ci_low"), values.get(f"{name}_ci_high"))
            return f"{name.replace('_', ' ')} {text}, {seconds:.1f} s"
    return f"{seconds:.1f} s"


def _stored(store: RunStore, condition_id: str) -> tuple[str | None, dict | None] | None:
    """(error, arrays) of a condition finished or failed earlier, or None."""
    if not store.is_done(condition_id):
        return None
    error = store.failure(condition_id)
    return error, None if error is not None else store.load_arrays(condition_id)
