"""Throughput and memory of ``imgbalance balance`` against I/O and the tutorial way.

Contenders, on one generated long-tailed tree of RGB JPEGs (224 to 256 px), each
in its own process (peak RSS is the whole process tree's, workers included):

* ``imgbalance smote`` and ``imgbalance stem``: ``imgbalance.balance(...)`` with
  a cold feature cache, all cores, plots off;
* ``pure I/O``: for every recipe of the same SMOTE plan, decode its parents
  and encode one image of the base parent's size and format - the floor any
  renderer pays - with the same number of processes;
* ``I/O + resize``: the same, plus resizing the other parents to the base
  parent's size, which any blend of parents of different sizes needs;
* ``tutorial SMOTE``: what common tutorials show - every image resized to
  224x224, flattened into one float32 array, imbalanced-learn
  ``SMOTE().fit_resample``, then each synthetic row saved as a JPEG. (The results
  committed before 2026-12-07 used a uint8 array, whose output is wrong: see
  ``peers/smote_tutorial.py``. ``balance_floor.py`` supersedes this script's peers.)

Usage::

    python benchmarks/balance_throughput.py --images 2000 \\
        --out benchmarks/results/balance_throughput.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))

from _harness import provenance, run_measured


def make_tree(root: Path, n: int, seed: int = 0) -> dict[str, int]:
    """Long-tailed RGB JPEG tree: smooth random colour fields, 224 to 256 px."""
    rng = np.random.default_rng(seed)
    weights = 0.45 ** np.arange(5)
    counts = np.maximum(8, np.round(n * weights / weights.sum())).astype(int)
    counts[0] += n - counts.sum()
    out = {}
    for c, k in enumerate(counts):
        folder = root / f"class_{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(int(k)):
            w, h = (int(v) for v in rng.integers(224, 257, 2))
            small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            im = Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC)
            noise = rng.integers(-12, 13, (h, w, 3))
            arr = np.clip(np.asarray(im, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(folder / f"{i:05d}.jpg", quality=90)
        out[folder.name] = int(k)
    return out


BALANCE = """
import json, imgbalance
r = imgbalance.balance({src!r}, {out!r}, method={method!r}, random_state=0, plots=False)
n = sum(1 for row in r.manifest if row["origin"] == "synthetic")
print(f"images={{n}} plan_s={{r.timings['plan_s']}} render_s={{r.timings['render_s']}}")
"""

PURE_IO = """
import io, os, time, hashlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from PIL import Image
import imgbalance
from imgbalance.rendering.outputs import render_jobs_for
from imgbalance.rendering.kernel import RenderOptions
from imgbalance.dataset.images import load_image

def work(jobs):
    for job in jobs:
        ims = [load_image(p).convert(job.mode) for p in job.parents]
        if {resize}:  # the resize a blend of parents of different sizes needs
            ims = [ims[0]] + [im.resize(ims[0].size, Image.Resampling.BILINEAR)
                              for im in ims[1:]]
        buf = io.BytesIO()
        fmt = "JPEG" if job.out.endswith(".jpg") else "PNG"
        kw = dict(quality=95) if fmt == "JPEG" else dict(compress_level=1)
        ims[0].save(buf, format=fmt, **kw)
        out = Path({out!r}, job.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_bytes(buf.getvalue())
        os.replace(tmp, out)
        hashlib.sha256(buf.getvalue()).hexdigest()
    return len(jobs)

if __name__ == "__main__":
    planned = imgbalance.plan({src!r}, "smote", random_state=0)
    jobs, _ = render_jobs_for(planned.plan, planned.records, planned.root, RenderOptions(), False)
    jobs = [j for j in jobs if j.op != "copy"]
    chunks = [jobs[i:i + 8] for i in range(0, len(jobs), 8)]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        n = sum(pool.map(work, chunks))
    print(f"images={{n}} render_s={{time.perf_counter() - t0:.3f}}")
"""

TUTORIAL = """
import time
from pathlib import Path
import numpy as np
from PIL import Image
from imblearn.over_sampling import SMOTE

root, out = Path({src!r}), Path({out!r})
paths = sorted(root.glob("*/*.jpg"))
classes = sorted({{p.parent.name for p in paths}})
# float32: in uint8, imbalanced-learn's X[nn] - X[row] wraps around (peers/smote_tutorial.py)
X = np.array([np.asarray(Image.open(p).convert("RGB").resize((224, 224))) for p in paths],
             dtype=np.float32)
y = np.array([classes.index(p.parent.name) for p in paths])
n = len(X)
X_res, y_res = SMOTE(random_state=0).fit_resample(X.reshape(n, -1), y)
for i, (row, label) in enumerate(zip(X_res[n:], y_res[n:])):
    d = out / classes[label]
    d.mkdir(parents=True, exist_ok=True)
    img = np.clip(row, 0, 255).astype(np.uint8).reshape(224, 224, 3)
    Image.fromarray(img).save(d / f"smote_{{i:06d}}.jpg", quality=95)
print(f"images={{len(X_res) - n}}")
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-tutorial", action="store_true")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    results: dict[str, object] = {
        **provenance(),
        "images": args.images,
        "repeats": args.repeats,
        "contenders": {},
    }
    with tempfile.TemporaryDirectory(prefix="imgbalance-bench-") as tmp:
        src = Path(tmp) / "src"
        t0 = time.perf_counter()
        results["classes"] = make_tree(src, args.images)
        print(
            f"generated {args.images} images in {time.perf_counter() - t0:.1f} s: "
            f"{results['classes']}",
            flush=True,
        )
        contenders = {
            "imgbalance smote": BALANCE.replace("{method!r}", "'smote'"),
            "imgbalance stem": BALANCE.replace("{method!r}", "'stem'"),
            "pure I/O (decode parents, encode one image per recipe)": PURE_IO.replace(
                "{resize}", "False"
            ),
            "I/O + resize (decode parents, resize them to the base, encode one image)": (
                PURE_IO.replace("{resize}", "True")
            ),
        }
        if not args.skip_tutorial:
            contenders["tutorial SMOTE (imbalanced-learn on flattened 224x224 arrays)"] = TUTORIAL
        table: dict[str, dict[str, float]] = {}
        for name, template in contenders.items():
            runs = []
            for r in range(args.repeats):
                out = Path(tmp) / f"out-{len(table)}-{r}"
                cache = Path(tmp) / f"cache-{len(table)}-{r}"  # cold feature cache
                code = template.format(src=str(src), out=str(out))
                runs.append(run_measured(code, env={"IMGBALANCE_CACHE_DIR": str(cache)}))
            med = {k: statistics.median(run[k] for run in runs) for k in runs[0]}
            med["images_per_s"] = round(med["images"] / med["wall_s"], 1)
            if "render_s" in med:
                med["render_images_per_s"] = round(med["images"] / med["render_s"], 1)
            med["runs_wall_s"] = [run["wall_s"] for run in runs]  # type: ignore[assignment]
            table[name] = med
            print(f"{name}: {json.dumps(med)}", flush=True)
        io_rate = table["pure I/O (decode parents, encode one image per recipe)"][
            "render_images_per_s"
        ]
        io_resize = table[
            "I/O + resize (decode parents, resize them to the base, encode one image)"
        ]["render_images_per_s"]
        for name in ("imgbalance smote", "imgbalance stem"):
            table[name]["render_vs_pure_io"] = round(
                table[name]["render_images_per_s"] / io_rate, 3
            )
            table[name]["render_vs_io_with_resize"] = round(
                table[name]["render_images_per_s"] / io_resize, 3
            )
        tut = table.get("tutorial SMOTE (imbalanced-learn on flattened 224x224 arrays)")
        if tut:
            ib = table["imgbalance smote"]
            table["imgbalance smote"]["speedup_vs_tutorial"] = round(
                tut["wall_s"] / ib["wall_s"], 2
            )
            table["imgbalance smote"]["memory_ratio_vs_tutorial"] = round(
                tut["peak_rss_mib"] / ib["peak_rss_mib"], 2
            )
        results["contenders"] = table
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
