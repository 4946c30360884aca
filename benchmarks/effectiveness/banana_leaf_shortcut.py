"""How much of banana_leaf's class can be read without looking at the leaf?

The dataset is a compilation of several public sets, and each source has its
own image size and file-name pattern (every ``dead`` image is 512x512, the
``panama-disease`` files are called ``panama-kaggle-NNN.jpg``...). A classifier
can learn those instead of the disease. This script measures the shortcut:
5-fold stratified cross-validation (3 repetitions) of a random forest on

- ``size``: width and height after EXIF orientation only;
- ``name``: the file-name pattern only (extension, digits-only stem, words,
  parentheses, spaces);
- ``size+name``: both;
- ``thumbnail``: the pixels as the balancing engine sees them (16x16 RGB),
  with logistic regression, for comparison with a content-based model;

against the majority class. Usage::

    python benchmarks/effectiveness/banana_leaf_shortcut.py ../shared/datasets/banana_leaf \\
        --out benchmarks/effectiveness/banana_leaf_shortcut.json
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import RepeatedStratifiedKFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import imgbalance
from imgbalance.planning.features import compute_features


def name_features(path: str) -> list[float]:
    name = Path(path).name
    stem = Path(path).stem
    return [
        float(name.lower().endswith(".jpeg")),
        float(stem.isdigit()),
        float(" " in name),
        float("(" in name),
        float("-" in name),
        float(bool(re.search(r"[A-Za-z]", stem))),
        float(len(stem)),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    t0 = time.perf_counter()
    catalog = imgbalance.scan(args.data, workers=1)
    records = sorted(catalog.usable(), key=lambda r: r.path)
    y = np.array([r.label for r in records])
    size = np.array([[r.width or 0, r.height or 0] for r in records], dtype=float)
    names = np.array([name_features(r.path) for r in records])
    thumbs, failed = compute_features(
        [str(catalog.root / r.path) for r in records],
        [r.sha256 or r.path for r in records],
        "thumbnail",
        workers=1,
    )
    assert not failed
    forest = RandomForestClassifier(n_estimators=200, random_state=0)
    sets = {
        "majority class": (DummyClassifier(strategy="most_frequent"), size),
        "size": (forest, size),
        "name": (forest, names),
        "size+name": (forest, np.hstack([size, names])),
        "thumbnail (logistic regression)": (
            make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000)),
            thumbs,
        ),
    }
    cv = RepeatedStratifiedKFold(n_splits=5, n_repeats=3, random_state=0)
    results = {}
    for label, (model, X) in sets.items():
        scores = cross_validate(model, X, y, cv=cv, scoring=("accuracy", "f1_macro"))
        results[label] = {
            "accuracy": [
                float(scores["test_accuracy"].mean()),
                float(scores["test_accuracy"].std()),
            ],
            "macro_f1": [
                float(scores["test_f1_macro"].mean()),
                float(scores["test_f1_macro"].std()),
            ],
        }
        a, f = results[label]["accuracy"], results[label]["macro_f1"]
        print(f"{label:34s} accuracy {a[0]:.3f} ± {a[1]:.3f}   macro-F1 {f[0]:.3f} ± {f[1]:.3f}")
    sizes: dict[str, dict[str, int]] = {}
    for r in records:
        key = f"{r.width}x{r.height}"
        sizes.setdefault(r.class_name, {})
        sizes[r.class_name][key] = sizes[r.class_name].get(key, 0) + 1
    top = {c: sorted(v.items(), key=lambda kv: -kv[1])[:3] for c, v in sizes.items()}
    for c, items in top.items():
        n = sum(sizes[c].values())
        print(f"  {c:18s} {n:4d} images; most common sizes: "
              + ", ".join(f"{k} ({v})" for k, v in items))  # fmt: skip
    print(f"({time.perf_counter() - t0:.0f} s)")
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "dataset": args.data.name,
                    "images": len(records),
                    "cv": "5-fold stratified, 3 repetitions, seed 0",
                    "results": results,
                    "sizes_per_class": sizes,
                    "date": time.strftime("%Y-%m-%d"),
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
