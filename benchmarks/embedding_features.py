"""Throughput of ``--features embedding:MODEL`` against a plain torchvision loop.

In one process, on the same images and the same model (randomly initialised: the
weights do not change the cost), interleaved A B A B, medians of ``--repeats``:

* ``imgbalance``: :func:`imgbalance.planning.embeddings.embed_images`, the code behind
  ``--features embedding:MODEL`` (two decoding threads, the next batch decoded while
  the model runs on this one);
* ``plain``: torchvision ``ImageFolder`` with the model's own transforms and a
  ``DataLoader(batch_size=32, num_workers=2)``, the same forward pass and hook.

Images/s is on wall time; CPU seconds include the DataLoader's worker processes.
Usage::

    python benchmarks/embedding_features.py --data ../shared/datasets/banana_leaf \\
        --model resnet18 --out benchmarks/results/embedding_features.json
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

from imgbalance.planning.embeddings import embed_images
from imgbalance.torch.models import build_model, final_linear

from _harness import provenance, write_result


def cpu_now() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def plain_loop(root: Path, loaded: Any, batch_size: int, workers: int) -> np.ndarray:
    model = loaded.model.eval()
    _, _, head = final_linear(model)
    captured: list[torch.Tensor] = []
    hook = head.register_forward_pre_hook(lambda _m, inputs: captured.append(inputs[0]))
    data = ImageFolder(str(root), transform=loaded.transforms)
    loader = DataLoader(data, batch_size=batch_size, num_workers=workers)
    out = []
    try:
        with torch.inference_mode():
            for x, _ in loader:
                captured.clear()
                model(x)
                out.append(captured[-1].reshape(len(x), -1).float().numpy())
    finally:
        hook.remove()
    return np.concatenate(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    loaded = build_model(args.model, None)
    data = ImageFolder(str(args.data))
    paths = [p for p, _ in data.samples]  # the same files in the same order
    embed_images(paths[:32], loaded)  # warm-up: first-call allocations, page cache
    runs: dict[str, list[dict[str, float]]] = {"imgbalance": [], "plain": []}
    feats: dict[str, np.ndarray] = {}
    for r in range(args.repeats):
        for name in ("imgbalance", "plain") if r % 2 == 0 else ("plain", "imgbalance"):
            c0, t0 = cpu_now(), time.perf_counter()
            if name == "imgbalance":
                feats[name], failed = embed_images(paths, loaded)
                assert not failed, failed
            else:
                feats[name] = plain_loop(args.data, loaded, 32, 2)
            wall, cpu = time.perf_counter() - t0, cpu_now() - c0
            runs[name].append({"wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
                               "images_per_s": round(len(paths) / wall, 1)})  # fmt: skip
            print(f"round {r + 1} {name}: {runs[name][-1]}", flush=True)
    same = bool(np.allclose(feats["imgbalance"], feats["plain"], atol=1e-4))
    med = {n: {k: statistics.median(x[k] for x in rs) for k in rs[0]} for n, rs in runs.items()}
    ratio = med["imgbalance"]["images_per_s"] / med["plain"]["images_per_s"]
    result = {
        **provenance(torch=torch.__version__, torch_threads=torch.get_num_threads()),
        "data": args.data.name,
        "images": len(paths),
        "model": args.model,
        "runs": runs,
        "median": med,
        "imgbalance_over_plain_images_per_s": round(ratio, 3),
        "same_features": same,
    }
    print(f"median: {json.dumps(med)}")
    print(f"imgbalance / plain images/s: {ratio:.2f} (features equal: {same})")
    write_result(args.out, result)


if __name__ == "__main__":
    main()
