"""The ``benchmark`` command line: run, list, leaderboard, report, validate-plugin.

Errors a user can fix print one line (``error: ...``) and exit with status 2; ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import typer
import typer.core
from rich.console import Console
from rich.table import Table

from benchmark.distributed import shutdown
from benchmark.errors import BenchmarkError
from benchmark.store import DEFAULT_OUT


class _WithoutFlagTypes:
    """Help without a ``<bool>`` placeholder beside on/off flags, which take no value."""

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for param in params:
            if getattr(param, "is_flag", False):
                param.display_type_rich = lambda ctx: None
        return params


class _Group(_WithoutFlagTypes, typer.core.TyperGroup):
    pass


class _Command(_WithoutFlagTypes, typer.core.TyperCommand):
    pass


# markdown: docstrings are reflowed (no line break where the source wrapped) and ``code`` shows as code
app = typer.Typer(cls=_Group, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode="markdown", help="Robustness benchmark for uncertainty-aware neural networks.")
command = functools.partial(app.command, cls=_Command)


#: Width of what is written to a file or a pipe (a run under nohup): no terminal sets one there, and rich's
#: 80 columns would cut the after-run table's headers and cells to "clea…".
LOG_WIDTH = 200


def out_console() -> Console:
    """Standard output, as wide as ``COLUMNS`` says at the time of the call (rich fixes a console's width from
    the environment it was made in), else the terminal, else :data:`LOG_WIDTH`; quiet on every torchrun rank
    but rank 0."""
    width = None if "COLUMNS" in os.environ or sys.stdout.isatty() else LOG_WIDTH
    return Console(quiet=os.environ.get("RANK", "0") != "0", width=width)

_state = {"debug": False}


@app.callback()
def _options(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")) -> None:
    _state["debug"] = debug


ModelDirOption = typer.Option(None, "--model-dir",
                              help="Where `robustbench:<ModelName>` weights are kept, in RobustBench's layout "
                                   "\\[default: $BENCHMARK_CACHE_DIR/robustbench, else "
                                   "~/.cache/benchmark/robustbench].")
OutOption = typer.Option(DEFAULT_OUT, "--out",
                         help="Directory holding runs/, checkpoints/ and leaderboards/ (--out . in a checkout "
                              "publishes into its leaderboards/).")


@command()
def run(
    model: str = typer.Option(..., "--model", "-m",
                              help="Registered plugin name, path/to/file.py:name, a comma-separated list, or all."),
    dataset: str = typer.Option("mnist", "--dataset", "-d",
                                help="mnist, fashion-mnist, cifar10, mnist-5k, or a custom dataset.json name."),
    profile: str | None = typer.Option(None, "--profile", "-p",
                                       help="The evaluation profile (`benchmark list` shows them) "
                                            "\\[default: standard on GPU, quick on CPU]."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    data_dir: Path | None = typer.Option(None, "--data-dir",
                                         help="Dataset directory (else $BENCHMARK_DATA_DIR, the cache, a download)."),
    seed: int = typer.Option(0, "--seed", help="Seed of training and evaluation."),
    out: Path = OutOption,
    retrain: bool = typer.Option(False, "--retrain", help="Ignore the cached checkpoint and train again."),
    checkpoint: Path | None = typer.Option(None, "--checkpoint",
                                           help="Evaluate these weights (.safetensors, or a tensors-only .pt) "
                                                "instead of training."),
    eps: float | None = typer.Option(None, "--eps", help="L-inf epsilon in [0, 1] \\[default: the dataset's]."),
    n_test: int | None = typer.Option(None, "--n-test",
                                      help="Evaluate the first N test images (overrides the profile)."),
    n_train: int | None = typer.Option(None, "--n-train", help="Train on the first N training images (smoke tests)."),
    epochs: int | None = typer.Option(None, "--epochs", help="Override the plugin's number of epochs (smoke tests)."),
    batch_size: int | None = typer.Option(None, "--batch-size",
                                          help="Evaluation batch size \\[default: 250]; part of the run's identity "
                                               "(attacks run per batch)."),
    download: bool = typer.Option(True, "--download/--no-download",
                                  help="Allow a torchvision download when a dataset is not found."),
    model_dir: Path | None = ModelDirOption,
) -> None:
    """Train (or reuse) a plugin, evaluate it, and update the leaderboard and its report; ``--model all`` (or a
    comma-separated list) runs every plugin in turn."""
    from benchmark.runner import RunRequest
    from benchmark.runner import run as execute
    from benchmark.suite import is_suite

    request = RunRequest(model=model, dataset=dataset, profile=profile, device=device, data_dir=data_dir, seed=seed,
                         out=out, retrain=retrain, checkpoint=checkpoint, eps=eps, n_test=n_test, n_train=n_train,
                         epochs=epochs, batch_size=batch_size, download=download, model_dir=model_dir)
    if is_suite(model):
        _run_suite(request)
        return
    row = execute(request)
    stdout = out_console()
    stdout.print(after_run_table(row))
    for line in after_run_paths(row, Path(out)):
        stdout.print(line, soft_wrap=True, highlight=False)


def after_run_table(row: dict) -> Table:
    """What one run measured and cost, one leaderboard column a line, so that it reads whole in 80 columns; the
    robust accuracy with its interval, its worst case over the R re-evaluations and the draws behind it."""
    from benchmark.columns import AFTER_RUN
    from benchmark.render import eps_text, interval_text

    table = Table(title=f"{row['model']} on {row['dataset']} ({row['profile']} profile)", show_header=False)
    table.add_column("column", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for column in AFTER_RUN:
        value = column.text(row[column.name])
        if column.name == "robust_acc":
            value = (f"{interval_text(row['robust_acc'], row['robust_acc_ci_low'], row['robust_acc_ci_high'], 4)} "
                     f"at eps {eps_text(row['eps'])}; worst of R={row['reevals']}: "
                     f"{column.text(row['robust_acc_worst'])}; S={row['samples']}, K={row['eot']}")
        table.add_row(column.name, value or "none")
    return table


def after_run_paths(row: dict, out: Path) -> list[str]:
    """The last lines after a run: where to look next, the report first."""
    from benchmark.board import report_dir

    report = report_dir(out, row["dataset"], row["protocol"], row["model"])
    return [f"report: {report / 'report.html'} (and report.md)",
            f"run: {out / 'runs' / row['run_id']}",
            f"leaderboard: {out / 'leaderboards' / 'index.html'}"]


def _run_suite(request) -> None:
    """``benchmark run --model all``: every plugin in turn, then one table of what each produced and cost."""
    from benchmark.suite import run_suite, suite_models

    if request.checkpoint is not None:
        raise BenchmarkError("--checkpoint holds one model's weights; it cannot be given with several models")
    entries = run_suite(request, suite_models(request.model))
    table = Table(title=f"board: {request.dataset}")
    for column in ("model", "clean_acc", "robust_acc", "eps", "flags", "train s", "eval s", "wall s"):
        table.add_column(column)
    for entry in entries:
        row = entry.row
        if row is None:  # its reason follows the table, on a line of its own (a cell would fold it)
            table.add_row(entry.model, "[red]failed[/]", "", "", "", "", "", f"{entry.wall_seconds:.0f}")
            continue
        table.add_row(entry.model, f"{row['clean_acc']:.4f}", f"{row['robust_acc']:.4f}", f"{row['eps']:.4g}",
                      row["flags"], f"{row['train_seconds']:.0f}", f"{row['eval_seconds']:.0f}",
                      f"{entry.wall_seconds:.0f}")
    stdout = out_console()
    stdout.print(table)
    for entry in entries:
        if entry.row is None:
            stdout.print(f"{entry.model} failed: {entry.error}", soft_wrap=True, highlight=False, markup=False)
    from benchmark.claims import write_claims

    try:
        stdout.print(f"claims checked: {write_claims(request.out)}")
    except BenchmarkError as exc:  # a board without a claim's plugin beside its reference
        stdout.print(f"no claims page: {exc}")
    failed = [entry.model for entry in entries if entry.row is None]
    stdout.print(f"{len(entries) - len(failed)} of {len(entries)} plugins finished in "
                 f"{sum(entry.wall_seconds for entry in entries):.0f} s of wall time; "
                 f"leaderboard: {Path(request.out) / 'leaderboards' / 'index.html'}", soft_wrap=True, highlight=False)
    if failed:
        raise BenchmarkError(f"{len(failed)} plugin(s) failed: {', '.join(failed)} (their reasons are above; "
                             "the others' rows are on the leaderboard)")


@command()
def fetch(
    model: str = typer.Argument(..., help="`robustbench:<ModelName>`, the name on RobustBench's leaderboard."),
    dataset: str = typer.Option("cifar10", "--dataset", "-d", help="The dataset the model was trained on."),
    model_dir: Path | None = ModelDirOption,
) -> None:
    """Download a RobustBench zoo model's weights (once, online) to where `benchmark run` reads them."""
    from benchmark.plugin import Task
    from benchmark.zoo import SHAPES, ZOO_DATASETS, fetch_weights, is_zoo_model, zoo_plugin

    if not is_zoo_model(model):
        raise BenchmarkError(f"benchmark fetch takes a RobustBench zoo model, robustbench:<ModelName>; got {model!r} "
                             "(bundled plugins train themselves)")
    plugin = zoo_plugin(model, model_dir)
    shape = SHAPES.get(ZOO_DATASETS.get(dataset, ""), (3, 32, 32))
    path = fetch_weights(plugin, Task(dataset, shape, 10, 0))
    out_console().print(f"weights of {plugin.name}: {path}; run it with: benchmark run --model {plugin.name} "
                        f"--dataset {dataset}" + (f" --model-dir {model_dir}" if model_dir is not None else ""),
                        soft_wrap=True, highlight=False)


@command("list")
def list_cmd(
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Also list custom datasets found here."),
) -> None:
    """Show the registered plugins, the datasets and the profiles."""
    from benchmark.data import available_datasets
    from benchmark.profiles import PROFILES
    from benchmark.registry import get_plugin_class, list_models
    from benchmark.zoo import zoo_summary

    table = Table(title="plugins")
    for column in ("name", "predictive", "inputs", "summary"):
        table.add_column(column)
    for name in list_models():
        cls = get_plugin_class(name)
        table.add_row(name, cls.predictive, cls().shapes_text(),
                      cls.summary or next(iter((cls.__doc__ or "").strip().splitlines()), ""))
    stdout = out_console()
    stdout.print(table)
    stdout.print(zoo_summary())
    stdout.print("datasets: " + ", ".join(available_datasets(data_dir)))
    for name, p in PROFILES.items():
        stdout.print(f"profile {name}: n_test={p.n_test or 'all'}, S={p.samples}, K={p.eot}, R={p.reevals}, "
                     f"attacks {', '.join(planned.name for planned in p.attacks)}")


@command()
def leaderboard(
    dataset: str | None = typer.Option(None, "--dataset", "-d",
                                       help="Rebuild one dataset \\[default: every dataset with runs or a "
                                            "published table]."),
    out: Path = OutOption,
) -> None:
    """Rebuild leaderboards/ (tables, index.html, reports) from the stored runs and the rows published there
    before (a stored run replaces the published row of its model and protocol).

    With --dataset, that dataset's board alone, as a run publishes it: index.html shows the others as published.
    """
    from benchmark.leaderboard import publish, publish_all

    if dataset:
        publish(out, dataset)
        names = [dataset]
    else:
        names = publish_all(out)
    stdout = out_console()
    for name in names:
        stdout.print(f"wrote {Path(out) / 'leaderboards' / name}.csv")


@command()
def export(
    format: str = typer.Option("robustbench", "--format", help="The card format; robustbench is the one there is."),
    dataset: str | None = typer.Option(None, "--dataset", "-d", help="One dataset \\[default: all on the board]."),
    out: Path = OutOption,
    to: Path | None = typer.Option(None, "--to", help="Where model_info/ is written \\[default: OUT/leaderboards]."),
) -> None:
    """Write each leaderboard row as a RobustBench model-info card (`model_info/<dataset>/Linf/<model>.json`)."""
    from benchmark.cards import export_cards

    if format != "robustbench":
        raise BenchmarkError(f"unknown export format {format!r}; the one there is: robustbench")
    to = to if to is not None else Path(out) / "leaderboards"
    paths = export_cards(out, to, dataset)
    out_console().print(f"wrote {len(paths)} card(s) under {Path(to) / 'model_info'}; "
                        "fields marked TO FILL (listed under fill_in) are for the model's author to complete")


@command()
def claims(
    out: Path = OutOption,
    write: Path | None = typer.Option(None, "--write",
                                      help="Where to write the page \\[default: OUT/leaderboards/claims.md]."),
) -> None:
    """Check the seed methods' published claims against the leaderboards and write the verdicts as Markdown."""
    from benchmark.claims import write_claims

    out_console().print(f"wrote {write_claims(out, write)}")


@command()
def report(
    model: str = typer.Option(..., "--model", "-m"),
    dataset: str = typer.Option("mnist", "--dataset", "-d"),
    profile: str | None = typer.Option(None, "--profile", "-p",
                                       help="Which profile's run \\[default: the latest run]."),
    out: Path = OutOption,
) -> None:
    """Render the calibration and robustness report of a model's latest run."""
    from benchmark.board import report_dir, table
    from benchmark.report import write_report

    frame = table(out, dataset)
    rows = (frame[(frame.model == model) & ((frame.profile == profile) if profile else True)]
            if not frame.empty else frame)
    if rows.empty:
        raise BenchmarkError(f"no finished run of {model!r} on {dataset!r} under {Path(out) / 'runs'}")
    row = rows.sort_values("date").iloc[-1]
    if not (Path(out) / "runs" / row.run_id).is_dir():
        raise BenchmarkError(f"the {row.protocol} row of {model!r} is published without its run "
                             f"({row.run_id}); its report is {report_dir(out, dataset, row.protocol, model)}")
    path = write_report(Path(out) / "runs" / row.run_id, report_dir(out, dataset, row.protocol, model))
    out_console().print(f"wrote {path} and {path.with_suffix('.html')}")


@command("validate-plugin")
def validate_plugin_cmd(
    spec: str = typer.Argument(..., help="A registered name, path/to/plugin.py (every plugin it registers) "
                                         "or path/to/plugin.py:name."),
) -> None:
    """Check a plugin file against the contract (build, output shapes, gradients, randomness, loss)."""
    from benchmark.registry import create_model, list_models, load_plugin_file
    from benchmark.validate import validate_plugin

    file, _, name = spec.partition(":")
    if spec in list_models() or not file.endswith(".py"):  # a registered name (an unknown one raises)
        path, names = None, [create_model(spec).name]
    else:
        path, names = file, ([name] if name else load_plugin_file(file))
    if not names:
        raise BenchmarkError(f"{path} registers no plugin: "
                             f"decorate a ModelPlugin subclass with @register_model(\"name\")")
    failed = warned = 0
    stdout = out_console()
    for plugin_name in names:
        plugin = create_model(plugin_name if path is None else f"{path}:{plugin_name}")
        table = Table(title=f"{plugin_name} ({plugin.predictive})")
        for column in ("check", "result", "detail"):
            table.add_column(column)
        for check in validate_plugin(plugin):
            failed += not check.ok and check.blocking
            warned += not check.ok and not check.blocking
            result = "[green]ok[/]" if check.ok else "[red]FAIL[/]" if check.blocking else "[yellow]warning[/]"
            table.add_row(check.name, result, "" if check.ok else check.detail)
        stdout.print(table)
    if failed:
        raise BenchmarkError(f"{failed} contract check(s) failed")
    stdout.print("all contract checks passed" + (f", {warned} warning(s): a run goes on and its diagnostics "
                                                 "flag them" if warned else ""))


def main() -> None:
    """Console entry point: one line per error unless --debug."""
    try:
        app(standalone_mode=False)
        shutdown()
    except BenchmarkError as exc:
        if _state["debug"]:
            raise
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except OSError as exc:  # the file system refused (permissions, a full disk, a name too long): the user can fix it
        if _state["debug"]:
            raise
        where = f": {exc.filename}" if exc.filename else ""
        Console(stderr=True).print(f"[bold red]error:[/] {exc.strerror or exc}{where}; "
                                   "finished work is kept and the same command resumes",
                                   highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted: finished conditions are saved; rerun the same command to resume")
        sys.exit(130)
    except typer.Abort:
        sys.exit(1)
    except Exception as exc:
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):  # a usage error (click's, vendored by typer or not)
            exc.show()
            sys.exit(exc.exit_code)
        if _state["debug"]:
            raise
        Console(stderr=True).print(f"[bold red]error:[/] unexpected {type(exc).__name__}: {exc} "
                                   "(rerun with --debug for the traceback)",
                                   highlight=False, soft_wrap=True)
        sys.exit(1)
