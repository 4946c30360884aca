"""The STEM job: imgbalance against a re-implementation of the public reference, one run.

A long-tailed tree of ``--images`` RGB JPEGs (224 to 256 px) is generated, then
each job runs in its own process with time and peak memory (summed PSS) measured:

- ``reference``: ``benchmarks/peers/stem_reference.py`` (grayscale, 256x256,
  target_ratio 0.7, k=4, then Mixup of half of each class);
- ``imgbalance 256``: ``balance --method stem`` with the same knobs and
  ``image_size=(256, 256)`` (in colour: imgbalance does not discard it);
- ``imgbalance native``: the same at the originals' size.

Usage::

    python benchmarks/performance/stem_vs_reference.py --images 600 \\
        --out benchmarks/results/stem_vs_reference.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from balance_throughput import make_tree

from _harness import run_measured

HERE = Path(__file__).resolve().parent

PEER = """
import runpy, sys
sys.argv = ["stem_reference.py", {src!r}, {out!r}]
runpy.run_path({script!r}, run_name="__main__")
"""

OURS = """
import imgbalance
r = imgbalance.balance({src!r}, {out!r}, method="stem", random_state=0, plots=False,
                       k_neighbors=4, image_size={size!r})
print(f"images={{len(r.manifest)}}")
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=600)
    ap.add_argument("--skip-reference", action="store_true")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="imgbalance-stem-") as tmp:
        src = Path(tmp) / "src"
        counts = make_tree(src, args.images)
        print(f"tree: {counts}", flush=True)
        env = {"IMGBALANCE_CACHE_DIR": str(Path(tmp) / "cache")}
        jobs = {
            "imgbalance 256": OURS.format(src=str(src), out=f"{tmp}/o256", size=(256, 256)),
            "imgbalance native": OURS.format(src=str(src), out=f"{tmp}/onat", size=None),
        }
        if not args.skip_reference:
            script = str(HERE.parent / "peers" / "stem_reference.py")
            jobs["reference"] = PEER.format(src=str(src), out=f"{tmp}/oref", script=script)
        for name, code in jobs.items():
            r = run_measured(code, env=env)
            results[name] = r
            print(f"{name}: {json.dumps(r)}", flush=True)
    if "reference" in results:
        ref = results["reference"]
        for name in ("imgbalance 256", "imgbalance native"):
            ours = results[name]
            print(
                f"{name}: {ref['wall_s'] / ours['wall_s']:.1f}x faster, "
                f"{ref['peak_rss_mib'] / ours['peak_rss_mib']:.1f}x less memory than the reference"
            )
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "machine": {"cpus": os.cpu_count()},
                    "date": time.strftime("%Y-%m-%d"),
                    "input_images": args.images,
                    "tree": counts,
                    "results": results,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
