"""RobustBench's model zoo as plugins: ``--model robustbench:<ModelName>``.

A zoo model is a deterministic plugin whose network is the zoo entry's architecture (RobustBench's own
constructor) holding the zoo's trained weights, read from a local RobustBench model directory laid out as
RobustBench lays it out (``<model-dir>/<dataset>/Linf/<ModelName>.pt``; by default under the benchmark's cache,
never the checkout's ``models/`` folder of bundled plugins). A run never downloads: a missing file is one error
line saying which file, where, and the ``benchmark fetch`` command that downloads it (:func:`fetch_weights`,
through RobustBench's own downloader). Weights are read with ``torch.load(weights_only=True)`` (no code runs),
then unwrapped as RobustBench's ``load_model`` does (a ``state_dict`` entry, ``module.``/``model.`` prefixes).
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import torch
from torch import nn

from benchmark.checkpoints import load_state
from benchmark.data.dataset import cache_dir_of, one_line
from benchmark.errors import BenchmarkError
from benchmark.plugin import ModelPlugin, Task
from benchmark.robustbench_compat import import_robustbench

PREFIX = "robustbench:"
THREAT = "Linf"
#: this suite's dataset -> RobustBench's dataset (the zoo's models were trained on the latter)
ZOO_DATASETS = {"cifar10": "cifar10", "cifar10-jpeg": "cifar10"}
SHAPES = {"cifar10": (3, 32, 32)}


def default_model_dir() -> Path:
    """Where zoo weights are kept unless ``--model-dir`` says otherwise: ``<cache>/robustbench`` (not RobustBench's
    own ./models, which in a checkout is the folder of the bundled plugins)."""
    return cache_dir_of() / "robustbench"


def is_zoo_model(spec: str) -> bool:
    """Whether ``--model`` names a RobustBench zoo entry."""
    return spec.startswith(PREFIX)


def zoo_entries(zoo_dataset: str) -> dict:
    """RobustBench's L-inf entries for one of its datasets: name -> {'model': constructor, 'gdrive_id': ...}."""
    model_zoo = import_robustbench("robustbench.model_zoo")
    enums = import_robustbench("robustbench.model_zoo.enums")
    return model_zoo.model_dicts[enums.BenchmarkDataset(zoo_dataset)][enums.ThreatModel(THREAT)]


def zoo_summary() -> str:
    """One line for ``benchmark list``: the zoo as a group, not every name."""
    try:
        counts = {dataset: len(zoo_entries(dataset)) for dataset in sorted(set(ZOO_DATASETS.values()))}
    except BenchmarkError as exc:
        return f"{PREFIX}<ModelName>: RobustBench zoo models, unavailable here ({exc})"
    listed = ", ".join(f"{n} for {d} ({THREAT})" for d, n in counts.items())
    return (f"{PREFIX}<ModelName>: RobustBench zoo models, deterministic, weights read from --model-dir "
            f"(default {default_model_dir()}; `benchmark fetch` downloads them): {listed}; names as on "
            "RobustBench's leaderboard")


class ZooPlugin(ModelPlugin):
    """A RobustBench zoo model, evaluated as it is deployed: its own architecture and weights, no training."""

    predictive = "deterministic"
    pretrained = True
    summary = "a RobustBench zoo model with its published weights"

    def __init__(self, zoo_name: str, model_dir: Path | None = None):
        self.zoo_name = zoo_name
        self.name = PREFIX + zoo_name
        self.model_dir = Path(model_dir) if model_dir is not None else default_model_dir()
        self.input_shapes = tuple(SHAPES[d] for d in sorted(set(ZOO_DATASETS.values())))

    def zoo_dataset(self, task: Task) -> str:
        if task.dataset not in ZOO_DATASETS:
            raise BenchmarkError(f"{self.name} was trained on {' or '.join(sorted(set(ZOO_DATASETS.values())))}; "
                                 f"run it with --dataset {' or '.join(ZOO_DATASETS)}, not {task.dataset!r}")
        return ZOO_DATASETS[task.dataset]

    def weights_path(self, task: Task) -> Path:
        """Where RobustBench keeps this model's weights under the model directory."""
        return self.model_dir / self.zoo_dataset(task) / THREAT / f"{self.zoo_name}.pt"

    def build(self, task: Task) -> nn.Module:
        # the contract check builds for a shape alone: the zoo dataset of that shape gives the architecture
        zoo_dataset = ZOO_DATASETS.get(task.dataset) or next(
            (d for d, shape in SHAPES.items() if shape == tuple(task.input_shape)), None)
        if zoo_dataset is None:
            self.zoo_dataset(task)  # refused, naming the datasets the zoo model was trained on
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return self.entry(zoo_dataset)["model"]()

    def entry(self, zoo_dataset: str) -> dict:
        """RobustBench's record of this model (its constructor and where its weights are downloaded from)."""
        entries = zoo_entries(zoo_dataset)
        if self.zoo_name not in entries:
            raise BenchmarkError(f"RobustBench has no {THREAT} model {self.zoo_name!r} for "
                                 f"{zoo_dataset}; `benchmark list` says how to name one")
        if isinstance(entries[self.zoo_name]["gdrive_id"], list):
            raise BenchmarkError(f"{self.name} is an ensemble of several checkpoints, which this suite does not "
                                 "load yet; choose a single-checkpoint zoo model")
        return entries[self.zoo_name]

    def fetch_command(self, task: Task) -> str:
        """The command that downloads this model's weights to where a run looks for them."""
        return f"benchmark fetch {self.name} --dataset {task.dataset} --model-dir {self.model_dir}"

    def load_weights(self, network: nn.Module, task: Task) -> str:
        """Load the zoo weights into ``network``; return a digest of the file (the run's training key)."""
        path = self.weights_path(task)
        if not path.is_file():
            raise BenchmarkError(f"RobustBench weights of {self.zoo_name} not found: {path}; fetch them once, "
                                 f"online, with: {self.fetch_command(task)}")
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise BenchmarkError(f"refusing {path}: not loadable with weights_only=True "
                                 f"({type(exc).__name__})") from exc
        state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else checkpoint
        if not isinstance(state, dict):
            raise BenchmarkError(f"refusing {path}: expected a state dict, found {type(state).__name__}")
        state = {_strip(key): value for key, value in state.items() if isinstance(value, torch.Tensor)}
        load_state(network, state, path, fix=f"it is not RobustBench's {self.zoo_name}: fetch it again")
        return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def _strip(key: str) -> str:
    """A zoo key without the ``module.`` (DataParallel) and ``model.`` wrappers its training left on it."""
    for prefix in ("module.", "model."):
        key = key.removeprefix(prefix)
    return key


def zoo_plugin(spec: str, model_dir: Path | None = None) -> ZooPlugin:
    """The plugin ``robustbench:<ModelName>`` names."""
    name = spec[len(PREFIX):]
    if not name:
        raise BenchmarkError(f"name the zoo model: --model {PREFIX}<ModelName> (as on RobustBench's leaderboard)")
    return ZooPlugin(name, model_dir)


def fetch_weights(plugin: ZooPlugin, task: Task) -> Path:
    """Download a zoo model's weights with RobustBench's own downloader to where a run reads them, unless they are
    there already; return their path. Nothing is loaded here (RobustBench's ``load_model`` would unpickle them)."""
    path = plugin.weights_path(task)
    if path.is_file():
        return path
    entry = plugin.entry(plugin.zoo_dataset(task))
    download = import_robustbench("robustbench.utils").download_gdrive_new
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        download(entry["gdrive_id"], path)
    except Exception as exc:  # no network, a moved file, a quota: the download's own error, in one line
        path.unlink(missing_ok=True)
        raise BenchmarkError(f"download of {plugin.name} into {path} failed ({one_line(exc)}); this needs the "
                             "internet, once") from exc
    if not path.is_file():
        raise BenchmarkError(f"RobustBench's downloader reported no error but wrote no {path}")
    return path
