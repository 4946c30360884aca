"""The layout's promises, checked: registries match the docs, imports form no circle and
take no private names, and each "where do I add X" answer of docs/architecture.md works."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import imgbalance
from imgbalance.cli.registries import FAMILIES, LOSS_NAMES, registry_of
from imgbalance.methods import METHODS, Method, register
from imgbalance.planning.recipes import PlanState
from imgbalance.registry import Registry

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "imgbalance"
README = (ROOT / "README.md").read_text(encoding="utf-8")


# -- registries against the README and the help texts ----------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_every_registered_name_is_in_the_readme(family: str) -> None:
    pytest.importorskip("torch")  # losses and models need it
    registry, _ = registry_of(family)
    missing = [n for n in registry.names() if f"`{n}`" not in README]
    assert not missing, f"README.md does not mention the registered {family} {missing}"


def test_help_texts_list_the_registries() -> None:
    from typer.testing import CliRunner

    from imgbalance.cli import app
    from imgbalance.torch.losses import list_losses

    assert sorted(LOSS_NAMES) == list_losses()  # the torch-free mirror of the loss registry
    text = " ".join(CliRunner().invoke(app, ["train", "--help"], terminal_width=300).output.split())
    for family in ("samplers", "mixing"):
        for name in registry_of(family)[0].names():
            assert name in text
    for name in LOSS_NAMES:
        assert name in text


def test_unknown_names_list_the_valid_ones() -> None:
    with pytest.raises(imgbalance.ConfigError, match=r'Unknown method "smoot". Did you mean smote'):
        imgbalance.create_method("smoot")
    with pytest.raises(imgbalance.ConfigError, match=r"Valid samplers: class-balanced, sqrt, none"):
        imgbalance.RunConfig.from_dict({"sampler": "balanced"})
    with pytest.raises(imgbalance.ConfigError, match=r"Valid mixing techniques: cutmix, mixup"):
        imgbalance.RunConfig.from_dict({"model": "linear", "mixing": "mixit"})
    with pytest.raises(imgbalance.ConfigError, match=r"Unknown class-weight scheme"):
        imgbalance.RunConfig.from_dict({"model": "linear", "class_weights": "balanced"})
    registry: Registry[int] = Registry("colour")
    registry.add("red", 1)
    with pytest.raises(ValueError, match="already registered"):
        registry.add("red", 2)


# -- imports ----------------------------------------------------------------------------------


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path) -> Iterator[tuple[str, list[str], int]]:
    """(absolute module, imported names, line) of every import, lazy ones included."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            yield mod, [a.name for a in node.names], node.lineno
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, [], node.lineno


def test_no_import_circles_not_even_lazy_ones() -> None:
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for mod, names, _ in _imports(name, path):
            targets = [f"{mod}.{n}" for n in names if f"{mod}.{n}" in modules] or [mod]
            for t in targets:
                # importing a sub-module runs its package's __init__ too, which only re-exports
                if t in modules and t != name and not name.startswith(t + "."):
                    graph[name].add(t)
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt] if nxt in stack else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    # package __init__ files re-export their children; a child importing a sibling through
    # the package is not a circle of code, so only module-to-module circles count
    real = [c for c in cycles if not any(_modules()[m].name == "__init__.py" for m in c)]
    assert not real, f"import circles: {real}"


def test_no_private_names_across_modules_and_no_import_of_the_package_root() -> None:
    bad = []
    for name, path in _modules().items():
        for mod, names, line in _imports(name, path):
            if not mod.startswith("imgbalance"):
                continue
            private = [n for n in names if n.startswith("_") and n != "__version__"]
            if private:
                bad.append(f"{path.name}:{line} imports {private} from {mod}")
            if mod == "imgbalance" and name != "imgbalance.__main__":
                bad.append(f"{path.name}:{line} imports {names} from the package root")
    assert not bad, "\n".join(bad)


def test_importing_imgbalance_imports_no_torch_and_no_scikit_learn() -> None:
    code = (
        "import sys, imgbalance; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'sklearn', 'imblearn'}))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"


def test_planning_imports_no_scikit_learn_and_no_scipy() -> None:
    """Every feature-space method plans without scikit-learn or SciPy (their import
    costs ~1.5 s of every balance job): neighbours come from imgbalance's exact search."""
    code = (
        "import sys, numpy as np\n"
        "from imgbalance.planner import plan_arrays\n"
        "X = np.random.default_rng(0).random((120, 6), dtype=np.float32)\n"
        "y = np.array([0] * 80 + [1] * 30 + [2] * 10)\n"
        "for m in ('smote', 'adasyn', 'borderline-smote', 'smote-enn', 'smote-tomek', 'stem',\n"
        "          'mixup', 'random-over', 'random-under', 'smote,tomek'):\n"
        "    plan_arrays(X, y, ['a', 'b', 'c'], m, random_state=0)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'scipy', 'imblearn'}))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"


def test_public_api() -> None:
    for name in imgbalance.__all__:
        assert getattr(imgbalance, name) is not None
    assert imgbalance.__version__ == imgbalance._version.__version__
    assert issubclass(imgbalance.ImgBalanceError, ValueError)
    for sub in ("ConfigError", "DatasetError", "OutputError", "MissingDependencyError"):
        assert issubclass(getattr(imgbalance, sub), imgbalance.ImgBalanceError)
    with pytest.raises(AttributeError):
        _ = imgbalance.NotAName  # type: ignore[attr-defined]


# -- where do I add X: each answer of docs/architecture.md, done for real ----------------------


@pytest.fixture
def scratch_registries() -> Iterator[None]:
    """Registries as they were after the test (a test's registrations are removed)."""
    from imgbalance.torch.losses import LOSSES
    from imgbalance.torch.models import MODELS

    saved = {id(r): dict(r._entries) for r in (METHODS, LOSSES, MODELS)}
    yield
    for r in (METHODS, LOSSES, MODELS):
        r._entries.clear()
        r._entries.update(saved[id(r)])


def test_adding_a_method(scratch_registries: None, tmp_path: Path) -> None:
    @register
    class FirstCopies(Method):
        """Copies of each class's first original up to the target (a test method)."""

        name = "first-copies"
        kind = "over"

        def run(self, state: PlanState, target: Any, rng: np.random.Generator) -> None:
            before = state.counts()
            for label, goal in self.resolve(target, state).items():
                rows = state.indices(label, originals_only=True)
                need = goal - int(state.counts()[label])
                if need > 0 and len(rows):
                    state.add_copies(label, np.repeat(rows[:1], need), method=self.name)
            state.record(self.name, before)

    assert "first-copies" in imgbalance.list_methods()
    from imgtools import rgb, save

    for cls, n in (("big", 6), ("small", 2)):
        for i in range(n):
            save(rgb(i + 10 * n), tmp_path / "src" / cls / f"{i}.png")
    result = imgbalance.balance(
        tmp_path / "src", tmp_path / "out", method="first-copies", workers=1, plots=False
    )
    assert result.counts_after == {"big": 6, "small": 6}
    copies = sorted((tmp_path / "out" / "small" / "synthetic").iterdir())
    assert len(copies) == 4
    assert {p.read_bytes() for p in copies} == {(tmp_path / "src/small/0.png").read_bytes()}


def test_adding_a_loss_and_a_model(
    scratch_registries: None, tmp_path: Path, split_tree: Path
) -> None:
    torch = pytest.importorskip("torch")
    from torch import nn

    from imgbalance.torch.losses import ClassLoss, LossSpec, register_loss
    from imgbalance.torch.models import register_model

    seen: dict[str, Any] = {}

    @register_loss("smoothed-ce", help="cross-entropy with label smoothing 0.1 (a test loss)")
    def smoothed(n_classes: int, spec: LossSpec) -> nn.Module:
        seen["loss"] = n_classes
        return ClassLoss(n_classes, label_smoothing=0.1)

    @register_model("tiny-linear", help="a linear layer on 8x8 pixels (a test model)")
    def tiny(n_classes: int, weights: str | None) -> nn.Module:
        seen["model"] = n_classes
        return nn.Sequential(nn.AdaptiveAvgPool2d(8), nn.Flatten(), nn.Linear(192, n_classes))

    cfg = imgbalance.RunConfig.from_dict(
        {"data": str(split_tree), "model": "tiny-linear", "loss": "smoothed-ce", "epochs": 1,
         "image_size": 16, "workers": 1}
    )  # fmt: skip
    from imgbalance.experiments import run_training

    summary = run_training(cfg, tmp_path / "run")
    n_classes = len(summary["classes"])
    assert seen == {"loss": n_classes, "model": n_classes}
    state = torch.load(tmp_path / "run" / "best_model.pt", weights_only=True)["members"][0]
    assert {k: tuple(v.shape) for k, v in state.items()} == {
        "2.weight": (n_classes, 192),
        "2.bias": (n_classes,),
    }


def test_adding_a_class_weight_scheme_a_sampler_and_a_mixing() -> None:
    from imgbalance.torch.mixing import MIXING, create_mixing
    from imgbalance.torch.samplers import SAMPLERS, sample_weights
    from imgbalance.torch.weights import CLASS_WEIGHTS, class_weights

    saved = {id(r): dict(r._entries) for r in (CLASS_WEIGHTS, SAMPLERS, MIXING)}
    try:

        @CLASS_WEIGHTS.register("log", help="1 / log(1 + n_c) (a test scheme)")
        def log(n: np.ndarray, beta: float) -> np.ndarray:
            out: np.ndarray = 1.0 / np.log1p(n)
            return out

        @SAMPLERS.register("head-only", help="draws the largest class only (a test sampler)")
        def head_only(counts: np.ndarray) -> np.ndarray:
            out: np.ndarray = (counts == counts.max()).astype(float)
            return out

        @MIXING.register("identity", help="leaves batches alone (a test mixing)")
        def identity(n_classes: int, alpha: float) -> Any:
            return lambda x, t: (x, t)

        cfg = imgbalance.RunConfig.from_dict(
            {"model": "linear", "class_weights": "log", "sampler": "head-only"}
        )
        assert (cfg.class_weights, cfg.sampler) == ("log", "head-only")
        imgbalance.RunConfig.from_dict({"model": "small-cnn", "mixing": "identity"})
        w = class_weights([100, 10, 0], "log")
        assert w[2] == 0 and w[1] > w[0] and w[:2].mean() == pytest.approx(1.0)
        assert list(sample_weights(np.array([0, 0, 1]), "head-only")) == [1.0, 1.0, 0.0]
        mixer = create_mixing("identity", 3, 1.0)
        assert mixer is not None and mixer("x", "t") == ("x", "t")
    finally:
        for r in (CLASS_WEIGHTS, SAMPLERS, MIXING):
            r._entries.clear()
            r._entries.update(saved[id(r)])


def test_adding_a_plot(tmp_path: Path) -> None:
    from imgbalance.reports.plotting import pyplot, save_figure

    def plot_counts(counts: dict[str, int], path: Path) -> None:
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(3, 2))
        ax.bar(list(counts), list(counts.values()))
        save_figure(fig, path)

    plot_counts({"a": 3, "b": 1}, tmp_path / "a.png")
    plot_counts({"a": 3, "b": 1}, tmp_path / "b.png")
    data = (tmp_path / "a.png").read_bytes()
    assert data.startswith(b"\x89PNG") and data == (tmp_path / "b.png").read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.suffix != ".png"]  # no temporary left


def test_module_sizes() -> None:
    """A module past ~450 lines is asking to be split (the CLI included)."""
    sizes = {
        p.relative_to(SRC).as_posix(): len(p.read_text().splitlines()) for p in SRC.rglob("*.py")
    }
    big = {k: v for k, v in sizes.items() if v > 470}
    assert not big, big
    assert not re.search(r"\btraining/", (ROOT / "docs" / "architecture.md").read_text())
