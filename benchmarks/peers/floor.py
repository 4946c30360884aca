"""The unavoidable work of one balance job, measured stage by stage in one process.

The recipes (which parents, which weights, which augmentation) come from imgbalance's
own plan, made before the clock starts; then, each stage timed in CPU seconds:

1. ``hash_inputs``: every original read and hashed once (sha256; what any duplicate
   check and any manifest of the originals needs);
2. ``thumbnails``: every original decoded once at reduced size (JPEG draft) to the
   planning thumbnail;
3. ``decode``: every distinct parent of a recipe decoded once at full size, kept;
4. ``resize``: every distinct (parent, base size) pair resized once (bilinear);
5. ``blend``: each output blended once, with Pillow's ``Image.blend`` (chained for
   more than two parents) or imgbalance's augmentation for ``augment`` recipes;
6. ``encode``: each output encoded once (the format imgbalance writes; PNG with
   imgbalance's fast writer, the fastest lossless PNG encoder at hand);
7. ``hash_outputs``: each output hashed once;
8. ``write``: each output written once (open, write, close; no temporary name),
   originals hard-linked.

Nothing is checked, nothing is safe against a crash: this is a floor, not a tool.
The planning itself (nearest neighbours on the thumbnails) is left out too, so the
floor is strict. Prints ``key=value`` pairs, ``floor_cpu_s`` the sum. Usage::

    python benchmarks/peers/floor.py SRC OUT --method smote
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

import imgbalance
from imgbalance.dataset.images import load_image
from imgbalance.planning.augment import apply_augment
from imgbalance.rendering.kernel import RenderOptions
from imgbalance.rendering.outputs import render_jobs_for
from imgbalance.rendering.png import encode_png

THUMB = 16


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--method", default="smote")
    args = ap.parse_args()
    planned = imgbalance.plan(args.src, args.method, random_state=0)
    jobs, links = render_jobs_for(
        planned.plan, planned.records, planned.root, RenderOptions(), False
    )
    jobs = [j for j in jobs if j.op != "copy"]
    copies = len(planned.plan.recipes) - len(jobs)
    originals = [planned.root / r.path for r in planned.records]
    stages: dict[str, float] = {}
    clock = time.process_time

    t = clock()
    for p in originals:
        with open(p, "rb") as fh:
            hashlib.sha256(fh.read()).digest()
    stages["hash_inputs"] = clock() - t

    t = clock()
    for p in originals:
        with Image.open(p) as im:
            im.draft("RGB", (THUMB * 2, THUMB * 2))
            im.convert("RGB").resize((THUMB, THUMB), Image.Resampling.BILINEAR)
    stages["thumbnails"] = clock() - t

    t = clock()
    decoded = {
        (p, mode): load_image(p).convert(mode)
        for p, mode in {(p, j.mode) for j in jobs for p in j.parents}
    }
    stages["decode"] = clock() - t

    t = clock()
    resized: dict[tuple[str, str, tuple[int, int]], Image.Image] = {}
    for j in jobs:
        size = decoded[j.parents[0], j.mode].size
        for p in j.parents[1:]:
            im = decoded[p, j.mode]
            if im.size != size and (p, j.mode, size) not in resized:
                resized[p, j.mode, size] = im.resize(size, Image.Resampling.BILINEAR)
    stages["resize"] = clock() - t

    t = clock()
    blended = []
    for j in jobs:
        base = decoded[j.parents[0], j.mode]
        if j.op == "augment" and j.augment is not None:
            blended.append(apply_augment(base, j.augment))
            continue
        im, total = base, j.weights[0]
        for p, w in zip(j.parents[1:], j.weights[1:], strict=True):
            other = decoded[p, j.mode]
            other = other if other.size == base.size else resized[p, j.mode, base.size]
            total += w
            im = Image.blend(im, other, w / total)  # running weighted mean
        blended.append(im)
    stages["blend"] = clock() - t

    t = clock()
    encoded = []
    for j, im in zip(jobs, blended, strict=True):
        if j.out.endswith(".png"):  # the fastest lossless PNG writer we know
            encoded.append(encode_png(np.asarray(im)))
            continue
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=95)
        encoded.append(buf.getvalue())
    stages["encode"] = clock() - t

    t = clock()
    for data in encoded:
        hashlib.sha256(data).digest()
    stages["hash_outputs"] = clock() - t

    t = clock()
    for folder in {str(Path(j.out).parent) for j in jobs} | {str(Path(p).parent) for _, p in links}:
        (args.out / folder).mkdir(parents=True, exist_ok=True)
    for j, data in zip(jobs, encoded, strict=True):
        with open(args.out / j.out, "wb") as fh:
            fh.write(data)
    for i, p in links:
        os.link(planned.root / planned.records[i].path, args.out / p)
    stages["write"] = clock() - t

    parts = " ".join(f"{k}_s={v:.3f}" for k, v in stages.items())
    print(
        f"images={len(jobs)} copies={copies} parents={len(decoded)} originals={len(originals)} "
        f"{parts} floor_cpu_s={sum(stages.values()):.3f}"
    )


if __name__ == "__main__":
    main()
