"""The whole ``imgbalance balance`` CLI job against its true floor and honest peers.

On one generated long-tailed tree of RGB JPEGs (224 to 256 px; the generator of
``balance_throughput.py``) and the same pixels saved as PNG, contenders run as
separate processes, **interleaved** (A B C ... then again, the order rotated each
round), each with a fresh output folder and a cold feature cache:

* ``imgbalance``: ``python -m imgbalance balance SRC OUT --method M`` (plots on, as
  users run it), and the same with ``--no-plots``; for every method in
  ``--methods``, and on the PNG tree;
* ``floor``: ``peers/floor.py``, the unavoidable work of the same plan in one
  process (each original hashed and thumbnailed once, each distinct parent
  decoded once, each output blended, encoded, hashed and written once);
  ``floor_cpu_s`` is the sum of its stages, interpreter and planning left out;
* ``smart peer``: ``peers/smote_thumbnail_pillow.py``, SMOTE on 16x16 thumbnails
  (imbalanced-learn's algorithm on scikit-learn's neighbours) and ``Image.blend`` at
  full resolution, with as many processes;
* ``tutorial float32``: ``peers/smote_tutorial.py``, imbalanced-learn SMOTE on
  flattened 224x224 float32 arrays (the correct version of the tutorial way);
  the uint8 version is run once, outside the timing, only to measure how wrong
  its pixels are.

Time: wall seconds, and CPU seconds (user + system of the process and every child
it waited for, from the kernel's ``wait4``). Memory: the kernel's peak RSS of the
largest process of each timed run, and, in one extra run of each headline contender
(not timed), the summed PSS of its whole process tree sampled at 10 Hz (a sampler
slows what it measures, so it never runs beside a timed run). Medians of
``--repeats`` rounds.

Usage::

    python benchmarks/balance_floor.py --images 2000 --work /dev/shm \\
        --out benchmarks/results/balance_floor.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from balance_throughput import make_tree

from _harness import provenance, run_measured, run_timed, write_result

HERE = Path(__file__).resolve().parent
PY = sys.executable
METHODS = ("smote", "adasyn", "mixup", "stem", "augment")


def png_copy(src: Path, dst: Path) -> None:
    """The same pixels as ``src``'s JPEGs, saved as PNG (zlib level 6, Pillow's default)."""
    for p in sorted(src.glob("*/*.jpg")):
        out = dst / p.parent.name / f"{p.stem}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.open(p).save(out, format="PNG")


def contenders(
    jpg: Path, png: Path, methods: list[str], workers: int, tutorial: bool, baseline: bool
) -> dict[str, list[str]]:
    def cli(src: Path, method: str, *extra: str) -> list[str]:
        return [PY, "-m", "imgbalance", "balance", str(src), "{out}", "--method", method,
                "--workers", str(workers), *extra]  # fmt: skip

    c: dict[str, list[str]] = {
        "imgbalance smote": cli(jpg, "smote"),
        "imgbalance smote --no-plots": cli(jpg, "smote", "--no-plots"),
        "imgbalance smote --no-plots, PNG input": cli(png, "smote", "--no-plots"),
        "imgbalance smote --no-plots, PNG input, --png-compress-level 1": cli(
            png,
            "smote",
            "--no-plots",
            "--png-compress-level",
            "1",  # Pillow's encoder
        ),
        "imgbalance smote --no-plots, PNG input, --format webp": cli(
            png, "smote", "--no-plots", "--format", "webp"
        ),
        "floor smote": [PY, str(HERE / "peers" / "floor.py"), str(jpg), "{out}"],
        "floor smote, PNG input": [PY, str(HERE / "peers" / "floor.py"), str(png), "{out}"],
        "smart peer": [
            *(PY, str(HERE / "peers" / "smote_thumbnail_pillow.py"), str(jpg), "{out}"),
            *("--workers", str(workers)),
        ],
    }
    if baseline:  # the same CLI job from another checkout (before/after a change)
        c["baseline imgbalance smote"] = cli(jpg, "smote")
    if tutorial:
        c["tutorial float32"] = [PY, str(HERE / "peers" / "smote_tutorial.py"), str(jpg), "{out}"]
    for m in methods:
        if m == "smote":
            continue
        c[f"imgbalance {m} --no-plots"] = cli(jpg, m, "--no-plots")
        c[f"floor {m}"] = [PY, str(HERE / "peers" / "floor.py"), str(jpg), "{out}", "--method", m]
    return c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--workers", type=int, default=min(os.cpu_count() or 1, 8))
    ap.add_argument("--skip-tutorial", action="store_true")
    ap.add_argument("--work", type=Path, default=None, help="folder for the trees and outputs")
    ap.add_argument(
        "--baseline-src",
        type=Path,
        help="also run the smote CLI job with this src/ folder first on the path (another "
        "checkout: the code before a change), as 'baseline imgbalance smote'",
    )
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    methods = [m for m in args.methods.split(",") if m]
    results: dict[str, object] = {
        **provenance(),
        "images": args.images,
        "repeats": args.repeats,
        "workers": args.workers,
        "work_filesystem": "tmpfs" if str(args.work or "").startswith("/dev/shm") else "disk",
    }
    with tempfile.TemporaryDirectory(prefix="imgbalance-floor-", dir=args.work) as tmp:
        root = Path(tmp)
        jpg, png = root / "jpg", root / "png"
        results["classes"] = make_tree(jpg, args.images)
        png_copy(jpg, png)
        todo = contenders(
            jpg, png, methods, args.workers, not args.skip_tutorial, args.baseline_src is not None
        )
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in todo}
        names = list(todo)
        for r in range(args.repeats):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                out = root / "out"
                cache = root / "cache"
                shutil.rmtree(out, ignore_errors=True)
                shutil.rmtree(cache, ignore_errors=True)
                argv = [a.replace("{out}", str(out)) for a in todo[name]]
                env = {"IMGBALANCE_CACHE_DIR": str(cache)}
                if name.startswith("baseline") and args.baseline_src:
                    env["PYTHONPATH"] = str(args.baseline_src.resolve())
                res = run_timed(argv, env)
                runs[name].append(res)
                print(f"round {r + 1} {name}: {json.dumps(res)}", flush=True)
        table = {}
        for name, rs in runs.items():
            med = {k: round(statistics.median(x[k] for x in rs), 3) for k in rs[0]}
            med["runs_cpu_s"] = [x["cpu_s"] for x in rs]  # type: ignore[assignment]
            med["runs_wall_s"] = [x["wall_s"] for x in rs]  # type: ignore[assignment]
            table[name] = med
        results["contenders"] = table

        memory = {}  # one sampled run each, apart from the timed ones
        for name in ("imgbalance smote", "smart peer", "tutorial float32"):
            if name not in todo:
                continue
            out, cache = root / "out", root / "cache"
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(cache, ignore_errors=True)
            argv = [a.replace("{out}", str(out)) for a in todo[name]]
            code = f"import os; os.execv({argv[0]!r}, {argv!r})"  # the sampled pid runs it
            m = run_measured(code, env={"IMGBALANCE_CACHE_DIR": str(cache)}, interval=0.1)
            memory[name] = m["peak_rss_mib"]
            print(f"memory {name}: {m['peak_rss_mib']} MiB (tree PSS, sampled)", flush=True)
        results["tree_pss_mib"] = memory

        if not args.skip_tutorial:  # how wrong the uint8 tutorial is (not timed)
            raw = root / "raw.npy"
            tut = [PY, str(HERE / "peers" / "smote_tutorial.py"), str(jpg)]
            shutil.rmtree(root / "out", ignore_errors=True)
            run_timed([*tut, str(root / "out"), "--save-raw", str(raw)], {})
            shutil.rmtree(root / "out", ignore_errors=True)
            wrong = run_timed(
                [*tut, str(root / "out"), "--dtype", "uint8", "--compare", str(raw)], {}
            )
            results["tutorial_uint8_pixels_off_by_40"] = wrong["pixels_off_by_40"]
            print(f"tutorial uint8: {wrong['pixels_off_by_40']:.1%} of pixels off by > 40")

    results["goals"] = goals(table, memory, methods)
    if "baseline imgbalance smote" in table:
        base = table["baseline imgbalance smote"]
        results["baseline_over_now"] = {
            k: round(base[k] / ours[k], 3) for k in ("cpu_s", "wall_s")
        } if (ours := table["imgbalance smote"]) else {}  # fmt: skip
        print(f"baseline / now: {results['baseline_over_now']}")
    for k, v in results["goals"].items():  # type: ignore[union-attr]
        print(f"{k}: {v}")
    write_result(args.out, results)


def goals(
    table: dict[str, dict[str, float]], memory: dict[str, float], methods: list[str]
) -> dict[str, dict[str, object]]:
    """Each goal of the benchmark: the measured ratio, the target, and whether it is met."""

    def goal(value: float, target: float, above: bool) -> dict[str, object]:
        return {"ratio": round(value, 2), "target": f"{'>=' if above else '<='} {target}",
                "met": bool(value >= target if above else value <= target)}  # fmt: skip

    ours = table["imgbalance smote"]
    g = {
        "CLI smote CPU / floor CPU": goal(
            ours["cpu_s"] / table["floor smote"]["floor_cpu_s"], 1.5, False
        ),
        "CLI smote --no-plots CPU / floor CPU": goal(
            table["imgbalance smote --no-plots"]["cpu_s"] / table["floor smote"]["floor_cpu_s"],
            1.5,
            False,
        ),
        "smart peer wall / CLI smote wall": goal(
            table["smart peer"]["wall_s"] / ours["wall_s"], 2, True
        ),
        "smart peer CPU / CLI smote CPU": goal(
            table["smart peer"]["cpu_s"] / ours["cpu_s"], 2, True
        ),
        "PNG input CPU / JPEG input CPU (--no-plots)": goal(
            table["imgbalance smote --no-plots, PNG input"]["cpu_s"]
            / table["imgbalance smote --no-plots"]["cpu_s"],
            1.5,
            False,
        ),
    }
    g["CLI smote --no-plots, PNG input, CPU / its floor CPU"] = goal(
        table["imgbalance smote --no-plots, PNG input"]["cpu_s"]
        / table["floor smote, PNG input"]["floor_cpu_s"],
        2,
        False,
    )
    if "tutorial float32" in table:
        g["tutorial float32 wall / CLI smote wall"] = goal(
            table["tutorial float32"]["wall_s"] / ours["wall_s"], 5, True
        )
        if "tutorial float32" in memory and "imgbalance smote" in memory:
            g["tutorial float32 memory / CLI smote memory"] = goal(
                memory["tutorial float32"] / memory["imgbalance smote"], 10, True
            )
    for m in methods:
        name = "imgbalance smote --no-plots" if m == "smote" else f"imgbalance {m} --no-plots"
        g[f"CLI {m} --no-plots CPU / its floor CPU"] = goal(
            table[name]["cpu_s"] / table[f"floor {m}"]["floor_cpu_s"], 2, False
        )
    return g


if __name__ == "__main__":
    main()
