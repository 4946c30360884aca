"""Every fenced code block of README.md runs as written, or is skipped for a stated reason.

A reader pastes these blocks first, so they are tested like doctests:

- every block is classified by a stable key (its language and first line): a new block
  that is neither run nor on ``SKIPPED_BLOCKS`` with a reason fails the test, and so does
  a key on those lists that the README no longer has;
- the ```python block runs statement by statement in one namespace, in a working folder
  holding a small real dataset (``data/<class>/patient_<n>_<i>.png``); a failure names
  the README line and the statement;
- the ``imgbalance`` lines of the ```console blocks run through the installed script,
  in order, in a working folder with ``data/`` (BCCD-like ``BloodImage_<n>`` names) and
  ``../datasets/bccd_wbc`` (the README's class counts and image sizes, so the output
  shown for ``analyze`` is compared line by line); the other command lines are on
  ``SKIPPED_COMMANDS`` with the reason;
- the ```yaml blocks, and the grid files the README links to, go through the grid loader
  and the run-config checks of ``imgbalance experiment``.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from imgbalance.experiments.grid import load_grid, plan_grid

from imgtools import COLOURS, colour_image, save

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
IMGBALANCE = Path(sys.executable).parent / "imgbalance"

#: blocks run by a test below, by key (language and first line)
RUN_BLOCKS = {
    "python: import imgbalance": "test_python_block_runs",
    "console: $ imgbalance analyze ../datasets/bccd_wbc --out report/": "test_console_commands",
    "console: $ imgbalance split data/ --out splits/ --group-by 'BloodImage_(\\d+)' "
    "--materialize link": "test_console_commands",
    "console: $ imgbalance balance splits/train balanced/ --method stem --seed 0": (
        "test_console_commands"
    ),
    "yaml: data: splits/": "test_yaml_blocks_load",
    "yaml: data: images/": "test_yaml_blocks_load",
}

#: blocks no test runs, by key, with the reason
SKIPPED_BLOCKS = {
    "bash: make demo": (
        "creates a virtualenv and installs packages (internet), then trains for minutes; "
        "`make test` runs the whole test suite, this test included"
    ),
    "bash: pip install -e .": "installs packages: needs the internet and changes the environment",
    "bash: # CPU only (small download, any machine)": (
        "installs torch from download.pytorch.org: needs the internet"
    ),
    "console: $ imgbalance compare ../datasets/bccd_wbc --budget 20m --jobs 2": (
        "trains a whole comparison to a 20-minute budget; its output is an excerpt (`...`)"
    ),
    "bash: ray start --head --port 6379": (
        "needs a Ray cluster (`ray start` on several nodes, HEAD_IP); the Ray backend's "
        "own tests run it on a local instance"
    ),
}

#: command lines inside run blocks that are not run, with the reason
SKIPPED_COMMANDS: dict[str, str] = {}

#: the ```yaml blocks: a whole grid, or keys that replace those of the block named
YAML_GRIDS = {
    "yaml: data: splits/": None,
    "yaml: data: images/": "yaml: data: splits/",
}


@dataclass(frozen=True)
class Block:
    lang: str
    line: int  # README line of the block's first line
    text: str

    @property
    def key(self) -> str:
        """Language and first line, without a trailing comment, spaces collapsed."""
        first = re.sub(r"\s+#.*", "", self.text.splitlines()[0]) if self.text else ""
        return f"{self.lang}: {' '.join(first.split())}"


def readme_blocks() -> list[Block]:
    """Every fenced block of README.md, in order."""
    blocks: list[Block] = []
    lines = README.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        fence = re.fullmatch(r"\s*```\s*([\w+-]*)\s*", lines[i])
        if fence is None:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
        assert end is not None, f"README.md line {i + 1}: a code fence is never closed"
        blocks.append(Block(fence.group(1) or "(none)", i + 2, "\n".join(lines[i + 1 : end])))
        i = end + 1
    return blocks


def blocks_of(test: str) -> list[Block]:
    """The README blocks ``test`` runs; each of its keys must still be in the README."""
    found = [b for b in readme_blocks() if RUN_BLOCKS.get(b.key) == test]
    gone = sorted({k for k, t in RUN_BLOCKS.items() if t == test} - {b.key for b in found})
    assert not gone, f"README.md no longer has these blocks (update RUN_BLOCKS): {gone}"
    return found


def test_every_block_is_classified() -> None:
    blocks = readme_blocks()
    keys = [b.key for b in blocks]
    assert len(blocks) >= 10, "the README's code blocks were not found"
    unclassified = [
        f"README.md line {b.line}: {b.key!r}"
        for b in blocks
        if b.key not in RUN_BLOCKS and b.key not in SKIPPED_BLOCKS
    ]
    assert not unclassified, (
        "README code blocks that no test runs and no skip list names (run them in this file, "
        "or add them to SKIPPED_BLOCKS with the reason):\n" + "\n".join(unclassified)
    )
    stale = sorted(k for k in (*RUN_BLOCKS, *SKIPPED_BLOCKS) if k not in keys)
    assert not stale, f"keys the README no longer has (update the lists): {stale}"
    assert not set(RUN_BLOCKS) & set(SKIPPED_BLOCKS)
    assert len(set(keys)) == len(keys), (
        "two README blocks share a key: make their first lines differ"
    )
    assert set(YAML_GRIDS) == {b.key for b in blocks if b.lang == "yaml"} & set(RUN_BLOCKS)


# -- the ```python block ------------------------------------------------------------------


#: the dataset the python block reads (images per class): two per patient, none shared
PY_COUNTS = {"blue": 30, "green": 14, "red": 10}


def _python_dataset(root: Path) -> None:
    rng = np.random.default_rng(0)
    patient = 0
    for name, n in PY_COUNTS.items():
        for i in range(n):
            patient += i % 2 == 0
            save(
                colour_image(rng, COLOURS[name], 24), root / name / f"patient_{patient:03d}_{i}.png"
            )


def run_python(block: Block, namespace: dict[str, object]) -> None:
    """Run ``block`` one top-level statement at a time; a failure names the README line."""
    tree = ast.parse(block.text, filename=str(README))
    for node in tree.body:
        statement = ast.get_source_segment(block.text, node) or ""
        ast.increment_lineno(node, block.line - 1)
        code = compile(ast.Module(body=[node], type_ignores=[]), "<README.md>", "exec")
        try:
            exec(code, namespace)
        except Exception as exc:
            raise AssertionError(
                f"README.md line {node.lineno} fails when pasted:\n    {statement}\n"
                f"{type(exc).__name__}: {exc}"
            ) from exc


@pytest.mark.slow
def test_python_block_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Python API block, pasted as is (it trains: the torch extra)."""
    pytest.importorskip("torch")
    (block,) = blocks_of("test_python_block_runs")
    work = tmp_path / "work"
    _python_dataset(work / "data")
    monkeypatch.chdir(work)
    ns: dict[str, object] = {"__name__": "__readme__"}  # nothing pre-defined
    run_python(block, ns)

    # what the block's comments promise
    assert ns["catalog"].counts() == PY_COUNTS
    assert {d.name for d in (work / "splits").iterdir()} >= {"train", "val", "test"}
    assert (work / "balanced" / "manifest.csv").is_file()
    assert repr(ns["plan"].recipes[0]).startswith("Recipe(op='smote', ")
    assert {"results.csv", "report.md", "report.html"} <= {
        p.name for p in (work / "runs").iterdir()
    }
    proba, failed = ns["proba"], ns["failed"]
    assert failed == {}
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    images, x_res = ns["images"], ns["X_res"]
    assert images.ndim == 4 and x_res.shape[1:] == images.shape[1:]


# -- the ```console and ```bash blocks ----------------------------------------------------

#: bccd_wbc as the README's analyze output shows it: count, smallest and largest side
BCCD = {
    "Basophil": (3, 205, 316),
    "Eosinophil": (88, 131, 367),
    "Lymphocyte": (33, 133, 247),
    "Monocyte": (20, 175, 330),
    "Neutrophil": (207, 131, 295),
}


def _smooth_jpeg(rng: np.random.Generator, base: np.ndarray, side: int, path: Path) -> None:
    small = np.clip(base + rng.normal(0, 30, (8, 8, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(small).resize((side, side), Image.Resampling.BILINEAR).save(path, quality=90)


def _cli_datasets(tmp: Path) -> Path:
    """``tmp/datasets/bccd_wbc`` and ``tmp/work/data``; returns the working folder."""
    rng = np.random.default_rng(1)
    n = 0
    for ci, (name, (count, lo, hi)) in enumerate(BCCD.items()):
        base = np.array([ci * 50, 120, 200 - ci * 30], dtype=np.float64)
        for side in [lo, hi, *rng.integers(lo, hi + 1, count - 2)]:
            n += 1
            path = tmp / "datasets" / "bccd_wbc" / name / f"BloodImage_{n:05d}.jpg"
            _smooth_jpeg(rng, base, int(side), path)
    n = 0
    for ci, (name, count) in enumerate(
        {"Eosinophil": 24, "Lymphocyte": 12, "Neutrophil": 48}.items()
    ):
        base = np.array([ci * 80, 120, 200 - ci * 60], dtype=np.float64)
        for _ in range(count):
            n += 1  # two images per BloodImage number: a group
            _smooth_jpeg(
                rng, base, 40, tmp / "work" / "data" / name / f"BloodImage_{n // 2:05d}_{n % 2}.jpg"
            )
    return tmp / "work"


def commands(block: Block) -> list[tuple[int, str, list[str]]]:
    """(README line, command, output lines the README shows after it) of a shell block."""
    out: list[tuple[int, str, list[str]]] = []
    for k, raw in enumerate(block.text.splitlines()):
        line = raw.rstrip()
        if block.lang == "console" and not line.startswith("$ "):
            if out:
                out[-1][2].append(line)
            continue
        command = line.removeprefix("$ ").strip()
        if command and not command.startswith("#"):
            out.append((block.line + k, command, []))
    return out


def _in_order(expected: list[str], got: list[str]) -> list[str]:
    """The lines of ``expected`` not found in ``got`` in the same order."""
    rest = iter(line.rstrip() for line in got)
    return [line for line in expected if line.strip() and line.rstrip() not in rest]


@pytest.mark.slow
def test_console_commands(tmp_path: Path) -> None:
    """analyze, split and both balance lines of the tour, as written, in order."""
    work = _cli_datasets(tmp_path)
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    ran = 0
    for block in blocks_of("test_console_commands"):
        for line, command, shown in commands(block):
            if command in SKIPPED_COMMANDS:
                continue
            argv = shlex.split(command)
            assert argv[0] == "imgbalance", (
                f"README.md line {line}: {command!r} is not an imgbalance command: run it here "
                "or add it to SKIPPED_COMMANDS with the reason"
            )
            proc = subprocess.run(
                [str(IMGBALANCE), *argv[1:]], cwd=work, env=env, capture_output=True,
                text=True, timeout=120, check=False,
            )  # fmt: skip
            assert proc.returncode == 0, (
                f"README.md line {line}: `{command}` exits {proc.returncode}:\n"
                f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
            )
            missing = _in_order(shown, proc.stdout.splitlines())
            assert not missing, (
                f"README.md line {line}: `{command}` no longer prints what the README shows; "
                f"missing or out of order:\n" + "\n".join(missing) + f"\n--- got:\n{proc.stdout}"
            )
            ran += 1
    assert ran >= 4
    assert (work / "report" / "analysis.json").is_file()
    assert (work / "splits" / "train").is_dir()
    assert (work / "balanced" / "manifest.csv").is_file()


# -- the ```yaml blocks and the grids the README links --------------------------------------


def _check_grid(path: Path) -> None:
    grid = load_grid(path)
    runs = plan_grid(grid)  # every run's settings through RunConfig
    assert runs, f"{path.name}: a grid without runs"


def test_yaml_blocks_load(tmp_path: Path) -> None:
    blocks = {b.key: b for b in blocks_of("test_yaml_blocks_load")}
    for key, base in YAML_GRIDS.items():
        block = blocks[key]
        grid = yaml.safe_load(block.text)
        if base is not None:
            grid = {**yaml.safe_load(blocks[base].text), **grid}
        path = tmp_path / f"grid-line{block.line}.yaml"
        path.write_text(yaml.safe_dump(grid), encoding="utf-8")
        try:
            _check_grid(path)
        except Exception as exc:
            raise AssertionError(
                f"README.md line {block.line}: the grid is rejected: {exc}"
            ) from exc


def test_linked_grid_files_load() -> None:
    linked = sorted(set(re.findall(r"\]\((configs/[\w.-]+\.ya?ml)\)", README.read_text("utf-8"))))
    assert linked, "the README links no grid file any more"
    for rel in linked:
        _check_grid(REPO / rel)
