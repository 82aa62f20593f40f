from pathlib import Path

import pytest
from torch import nn

from benchmark.errors import BenchmarkError
from benchmark.plugin import ModelPlugin
from benchmark.registry import create_model, get_plugin_class, list_models, register_model
from benchmark.validate import validate_plugin

PLUGINS = Path(__file__).parent / "plugins"
MASKING = PLUGINS / "masking_plugins.py"


@pytest.mark.parametrize("name, wrong_kind", [("mc-dropout", "deterministic"), ("endp", "deterministic"),
                                              ("baseline", "ensemble"), ("ensemble", "stochastic")])
def test_a_plugin_declaring_the_wrong_kind_fails_the_contract_checks(name, wrong_kind):
    """The registry-wide contract check below is what ties each plugin's declared kind to what its network does:
    the same plugin declaring another kind is refused."""
    plugin_class = get_plugin_class(name)
    liar = type(f"Mislabelled{plugin_class.__name__}", (plugin_class,), {"predictive": wrong_kind})()
    assert [c for c in validate_plugin(plugin_class()) if not c.ok] == []
    assert [c for c in validate_plugin(liar) if not c.ok], f"{name} passed as {wrong_kind}"


def test_unknown_model_suggests_close_names():
    with pytest.raises(BenchmarkError, match="did you mean.*mc-dropout"):
        get_plugin_class("mc-dropuot")


def test_decorator_rejects_non_plugins_and_bad_kinds():
    with pytest.raises(BenchmarkError):
        register_model("not-a-plugin")(object)

    class Weird(ModelPlugin):
        predictive = "psychic"

    with pytest.raises(BenchmarkError, match="predictive"):
        register_model("weird")(Weird)


def test_two_different_classes_cannot_share_a_name():
    class First(ModelPlugin):
        def build(self, task):
            return nn.Identity()

    class Second(ModelPlugin):
        def build(self, task):
            return nn.Identity()

    register_model("dup-test")(First)
    with pytest.raises(BenchmarkError, match="two plugins"):
        register_model("dup-test")(Second)


def test_plugin_file_path_creates_the_named_plugin():
    plugin = create_model(f"{PLUGINS / 'good_plugin.py'}:tiny-linear")
    assert plugin.name == "tiny-linear"
    assert "tiny-linear" in list_models()


def test_plugin_file_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(BenchmarkError, match="not found"):
        create_model(f"{tmp_path / 'missing.py'}:x")
    with pytest.raises(BenchmarkError, match="registers .*not 'nope'"):
        create_model(f"{PLUGINS / 'good_plugin.py'}:nope")
    broken = tmp_path / "broken.py"
    broken.write_text("raise ValueError('boom')\n")
    with pytest.raises(BenchmarkError, match="failed to import: ValueError: boom"):
        create_model(f"{broken}:x")


@pytest.mark.slow
@pytest.mark.parametrize("name", list_models())
def test_every_registered_plugin_passes_the_contract_checks(name):
    """Iterates over the registry: a new plugin is checked without editing this test."""
    plugin = create_model(name)
    assert plugin.summary or plugin.__doc__, f"{name} has nothing to show in `benchmark list`"
    failures = [c for c in validate_plugin(plugin) if not c.ok]
    assert failures == []


def test_validation_warns_when_input_gradients_are_all_zero():
    """A quantized-input model used to pass as 'input gradient ok' although no gradient attack can move it."""
    quantized = {c.name: c for c in validate_plugin(create_model(f"{MASKING}:masked-quantized-input"))}
    check = quantized["input gradient not all zero(1x28x28)"]
    assert not check.ok and not check.blocking and "cannot move" in check.detail
    assert quantized["input gradient(1x28x28)"].ok  # finite, merely zero


def test_validation_names_the_broken_part():
    bad = {c.name: c for c in validate_plugin(create_model(f"{PLUGINS / 'bad_plugin.py'}:bad-shape"))}
    assert not bad["forward(1x28x28) output"].ok
    random = {c.name: c for c in validate_plugin(create_model(f"{PLUGINS / 'bad_plugin.py'}:secretly-random"))}
    assert not random["repeatable output(1x28x28)"].ok
    assert random["forward(1x28x28) output"].ok


def test_entry_point_plugins_are_loaded(monkeypatch):
    import benchmark.registry as registry

    class FakeEntryPoint:
        name, value = "ep-plugin", "somewhere:Plugin"

        def load(self):
            class FromEntryPoint(ModelPlugin):
                def build(self, task):
                    return nn.Identity()

            return register_model("from-entry-point")(FromEntryPoint)

    monkeypatch.setattr(registry, "_discovered", False)
    monkeypatch.setattr(registry, "entry_points",
                        lambda group: [FakeEntryPoint()] if group == registry.ENTRY_POINT_GROUP else [])
    assert "from-entry-point" in registry.list_models()


def test_checkpoint_key_follows_shared_model_code(monkeypatch):
    """Editing a shared module (benchmark.layers.moments) must change EnDP's key, so its cached checkpoint retrains."""
    import inspect

    import benchmark.layers.moments
    from benchmark.registry import plugin_source_hash

    plugin = create_model("endp")
    before = plugin_source_hash(plugin)
    real = inspect.getsource
    monkeypatch.setattr(inspect, "getsource",
                        lambda obj: real(obj) + "# edited" if obj is benchmark.layers.moments else real(obj))
    assert plugin_source_hash(plugin) != before


def test_a_broken_entry_point_warns_and_the_others_load(monkeypatch):
    import benchmark.registry as registry

    class BrokenEntryPoint:
        name, value = "broken", "nowhere:Plugin"

        def load(self):
            raise ImportError("no module named nowhere")

    monkeypatch.setattr(registry, "_discovered", False)
    monkeypatch.setattr(registry, "entry_points", lambda group: [BrokenEntryPoint()])
    with pytest.warns(UserWarning, match="could not load plugin entry point 'broken'"):
        names = registry.list_models()
    assert "baseline" in names


def test_duplicates_are_told_apart_by_module_and_class():
    def plugin_class(module: str) -> type[ModelPlugin]:
        cls = type("SameName", (ModelPlugin,), {"build": lambda self, task: nn.Identity()})
        cls.__module__ = module
        return cls

    register_model("dup-by-module")(plugin_class("first_package.plugins"))
    register_model("dup-by-module")(plugin_class("first_package.plugins"))  # the same module imported again
    with pytest.raises(BenchmarkError, match="two plugins are registered as 'dup-by-module'"):
        register_model("dup-by-module")(plugin_class("second_package.plugins"))


@pytest.mark.slow
def test_validate_plugin_command_reports_warnings_without_failing():
    import subprocess
    import sys

    def validate(spec: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "benchmark", "validate-plugin", spec], capture_output=True,
                              text=True, timeout=300, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})

    result = validate(f"{MASKING}:masked-quantized-input")
    assert result.returncode == 0, result.stderr
    assert "warning" in result.stdout and "input gradient not all zero(1x28x28)" in result.stdout
    bad = validate(f"{PLUGINS / 'bad_plugin.py'}:bad-shape")
    assert bad.returncode == 2 and "contract check(s) failed" in bad.stderr
