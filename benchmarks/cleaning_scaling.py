"""Planning time of the cleaning methods (``smote-enn``, ``stem``) against the number of
images, on real thumbnails.

The features are imgbalance's default ones (16 x 16 RGB thumbnails, 768 numbers)
of a class-folder tree, computed once; CIFAR-10's training part (50,000 images,
unpacked by ``effectiveness/cifar10_lt.py`` into ``WORK/cifar10/train``) gives
sizes up to 32,000 at a mild, fixed imbalance (class i keeps a share
proportional to ``2 ** (-i / 9)``, the first files of each class by name), so
every size has the same shape and only n changes.

Each plan runs in its own process (``plan_arrays`` on the features, no images
decoded), timed by the kernel (``wait4``: CPU of the process, BLAS threads
included). With ``--baseline-src`` another checkout's ``src`` runs beside it,
interleaved round by round, and the plans' digests are compared: the same
digest means the same plan, value for value (the digest is of the plan's
canonical JSON, so a change of ``plan.json``'s layout does not count). With
``--approximate`` the same code also runs with ``neighbor_search="approximate"``
(faiss), and how close its neighbours are to the exact ones is measured on each
size's originals. Medians of ``--repeats`` rounds; ``--baseline-repeats`` can run
the (slow) baseline fewer times.

Usage::

    python benchmarks/cleaning_scaling.py --tree WORK/cifar10/train \\
        --sizes 8000 16000 32000 --baseline-src OLD/src \\
        --out benchmarks/results/cleaning_scaling.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import own_peak_mib, provenance, run_timed, write_result

METHODS = ("smote-enn", "stem")


def subset(y: np.ndarray, n: int) -> np.ndarray:
    """Rows of a mildly long-tailed subset of about ``n`` rows (the first of each class)."""
    k = int(y.max()) + 1
    share = 2.0 ** (-np.arange(k) / (k - 1))
    counts = np.round(n * share / share.sum()).astype(int)
    rows = [np.flatnonzero(y == c)[: counts[c]] for c in range(k)]
    short = [c for c in range(k) if len(rows[c]) < counts[c]]
    if short:
        raise SystemExit(f"the tree has too few images in class {short[0]} for {n} images")
    return np.concatenate(rows)


def child(features: str, n: int, method: str, search: str) -> None:
    """Plan ``method`` on a subset of the features; print its time and the plan's digest."""
    from imgbalance.planner import plan_arrays

    X_all, y_all, classes = load(features)
    rows = subset(y_all, n)
    X, y = np.ascontiguousarray(X_all[rows]), y_all[rows]
    kw = {} if search == "exact" else {"neighbor_search": search}  # the baseline has no such
    t = time.process_time()
    plan = plan_arrays(X, y, classes, method, random_state=0, **kw)
    cpu = time.process_time() - t
    canonical = json.dumps(plan.to_dict(), sort_keys=True)  # whatever plan.json's layout
    digest = int(hashlib.sha256(canonical.encode()).hexdigest()[:12], 16)  # exact in a float
    removed = sum(e.get("removed", 0) for e in plan.log if e["step"] == "enn")
    print(
        f"plan_cpu_s={cpu:.3f} rows_in={len(rows)} rows_out={len(plan.kept) + len(plan.recipes)} "
        f"enn_removed={removed} plan_digest={digest} peak_mib={own_peak_mib()}"
    )


def agreement(features: Path, n: int) -> dict[str, float]:
    """How close the approximate neighbours are to the exact ones, on the originals of one
    size: the share of 3-nearest lists that are the same, and of ENN's decisions (keep a
    row when its 3 neighbours share its class) that are the same."""
    from imgbalance.methods._hnsw import ApproximateIndex
    from imgbalance.methods._knn import NeighbourIndex
    from imgbalance.planning.recipes import PlanState

    X_all, y_all, classes = load(features)
    rows = subset(y_all, n)
    X, y = np.ascontiguousarray(X_all[rows]), y_all[rows]
    state = PlanState(X, y, classes)
    every = np.arange(len(y))
    exact = NeighbourIndex(8).neighbours(state, every, 3)
    t = time.process_time()
    approx = ApproximateIndex(8).neighbours(state, every, 3)
    cpu = time.process_time() - t
    keep_exact = (y[exact] == y[:, None]).all(axis=1)
    keep_approx = (y[approx] == y[:, None]).all(axis=1)
    return {
        "rows": len(y),
        "same_3_nearest": round(float((exact == approx).all(axis=1).mean()), 4),
        "same_enn_decision": round(float((keep_exact == keep_approx).mean()), 4),
        "approximate_search_cpu_s": round(cpu, 2),
    }


def features_of(tree: Path, out: Path) -> None:
    from imgbalance.planning.features import compute_features

    classes = sorted(p.name for p in tree.iterdir() if p.is_dir())
    paths, labels = [], []
    for i, c in enumerate(classes):
        files = sorted(str(f) for f in (tree / c).iterdir() if f.is_file())
        paths += files
        labels += [i] * len(files)
    t = time.perf_counter()
    X, failed = compute_features(paths, paths, "thumbnail", cache=False)
    if failed:
        first = next(iter(failed.values()))
        raise SystemExit(f"{len(failed)} images could not be read, the first: {first}")
    print(f"features of {len(paths)} images in {time.perf_counter() - t:.1f} s")
    np.savez(out, y=np.array(labels), classes=np.array(classes))
    np.save(out.with_suffix(".X.npy"), X)  # memory-mapped by each plan's process


def load(features: str | Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The features (memory-mapped: a plan's process reads only its subset's rows, so its
    peak RSS is the subset's and the plan's, not all 50,000 rows'), labels, classes."""
    data = np.load(features)
    X = np.load(Path(features).with_suffix(".X.npy"), mmap_mode="r")
    return X, data["y"], [str(c) for c in data["classes"]]


def command(args: argparse.Namespace) -> str:
    """The command line, with this machine's folders as placeholders."""
    parts = ["python benchmarks/cleaning_scaling.py --tree WORK/cifar10/train"]
    parts.append("--sizes " + " ".join(map(str, args.sizes)))
    parts.append("--methods " + " ".join(args.methods))
    parts.append(f"--repeats {args.repeats}")
    if args.approximate:
        parts.append("--approximate")
    if args.baseline_src:
        parts.append("--baseline-src PREVIOUS_CHECKOUT/src")
    if args.baseline_repeats is not None:
        parts.append(f"--baseline-repeats {args.baseline_repeats}")
    if args.out:
        parts.append(f"--out {args.out}")
    return " ".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--tree", type=Path, help="class-folder tree (CIFAR-10's train part)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[8000, 16000, 32000])
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--baseline-src", type=Path, help="another checkout's src/, run beside")
    ap.add_argument("--baseline-repeats", type=int, help="rounds with the baseline (default all)")
    ap.add_argument(
        "--approximate", action="store_true", help="also neighbor_search=approximate (faiss)"
    )
    ap.add_argument("--out", type=Path)
    ap.add_argument(
        "--child", nargs=4, metavar=("FEATURES", "N", "METHOD", "SEARCH"), help=argparse.SUPPRESS
    )
    args = ap.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.child[2], args.child[3])
        return
    if args.tree is None:
        ap.error("--tree is required")
    here = Path(__file__).resolve()
    src = here.parents[1] / "src"
    contenders = {"imgbalance": (src, "exact")}
    if args.approximate:
        contenders["approximate"] = (src, "approximate")
    if args.baseline_src:
        contenders["baseline"] = (args.baseline_src.resolve(), "exact")
    base_rounds = args.repeats if args.baseline_repeats is None else args.baseline_repeats
    runs: dict[str, list[dict[str, float]]] = {}
    agree: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        feats = Path(tmp) / "features.npz"
        features_of(args.tree, feats)
        if args.approximate:
            for size in args.sizes:
                agree[str(size)] = agreement(feats, size)
                print(f"agreement n={size}: {agree[str(size)]}", flush=True)
        for r in range(args.repeats):
            names = list(contenders)
            names = names[r % len(names) :] + names[: r % len(names)]  # rotate the order
            for size in args.sizes:
                for method in args.methods:
                    for name in names:
                        if name == "baseline" and r >= base_rounds:
                            continue
                        where, search = contenders[name]
                        env = {"PYTHONPATH": str(where)}
                        argv = [sys.executable, str(here), "--child", str(feats), str(size)]
                        argv += [method, search]
                        res = run_timed(argv, env)
                        runs.setdefault(f"{name} {method} {size}", []).append(res)
                        print(f"round {r + 1} {name} {method} n={size}: {res}", flush=True)
    table: dict[str, dict[str, float]] = {}
    for key, rs in runs.items():
        table[key] = {
            "rounds": len(rs),
            **{
                m: round(statistics.median(x[m] for x in rs), 3)
                for m in ("cpu_s", "wall_s", "plan_cpu_s", "max_rss_mib", "peak_mib")
                if all(m in x for x in rs)  # the baseline's child may not print its peak
            },
            "rows_in": rs[0]["rows_in"],
            "rows_out": rs[0]["rows_out"],
            "enn_removed": rs[0].get("enn_removed"),
            "same_plan_every_round": len({x["plan_digest"] for x in rs}) == 1,
        }
    summary: dict[str, object] = {}
    lo, hi = min(args.sizes), max(args.sizes)
    for method in args.methods:
        for name in contenders:
            a, b = table.get(f"{name} {method} {lo}"), table.get(f"{name} {method} {hi}")
            if a and b and lo != hi:
                summary[f"{name} {method}: cpu x{hi / lo:g} images"] = round(
                    b["plan_cpu_s"] / a["plan_cpu_s"], 2
                )
        for size in args.sizes:
            new = runs.get(f"imgbalance {method} {size}")
            old = runs.get(f"baseline {method} {size}")
            if new and old:
                summary[f"{method} n={size}: baseline / imgbalance plan CPU"] = round(
                    table[f"baseline {method} {size}"]["plan_cpu_s"]
                    / table[f"imgbalance {method} {size}"]["plan_cpu_s"],
                    2,
                )
                summary[f"{method} n={size}: same plan as the baseline"] = (
                    new[0]["plan_digest"] == old[0]["plan_digest"]
                )
            fast = runs.get(f"approximate {method} {size}")
            if new and fast:
                summary[f"{method} n={size}: exact / approximate plan CPU"] = round(
                    table[f"imgbalance {method} {size}"]["plan_cpu_s"]
                    / table[f"approximate {method} {size}"]["plan_cpu_s"],
                    2,
                )
    for k, v in summary.items():
        print(f"{k}: {v}")
    write_result(
        args.out,
        {
            **provenance(),
            "command": command(args),
            "tree": args.tree.name,
            "summary": summary,
            "agreement": agree,
            "runs": table,
        },
    )


if __name__ == "__main__":
    main()
