"""Training throughput: imgbalance's loop against an idiomatic plain-PyTorch loop.

In one process, on one split of a real dataset, for each model this trains

* ``imgbalance memory``: ``run_training`` with ``data_mode=memory`` (every image decoded
  once into uint8, batches augmented on the tensor);
* ``imgbalance stream``: ``run_training`` with ``data_mode=stream`` (batches decoded from
  the files a few ahead in a thread pool);
* ``plain``: torchvision ``ImageFolder`` + ``DataLoader(num_workers=W,
  persistent_workers=True)``, per-image ``v2`` flip + affine in the workers, the same
  model built by the same seed, Adam with the same settings, the same batch size,
  image size, torch threads and number of epochs, and a validation pass every epoch as
  imgbalance does. With ``--device cuda`` the plain loop does what a careful GPU user
  does: ``pin_memory=True``, non-blocking copies, bf16 autocast and ``channels_last``
  (imgbalance's own defaults on CUDA);
* ``plain-kept``: the plain loop again, under the allocator setting imgbalance's runs
  use (:func:`imgbalance._malloc.keep_freed_memory`: freed blocks stay in the heap for the
  next step instead of being mapped afresh), to show how much of a difference is the
  allocator and how much the loop.

Each is run ``--repeats`` times in turn (A, B, C, A, B, C, ...) and the medians are
reported, with the ratio of each imgbalance mode to the plain loop. Two numbers per
run: the training loop (epochs with their validation passes; decoding included for
the streaming and plain loops, which decode as they go) and end to end (the in-memory
path's decoding added). CPU seconds include the DataLoader workers; their system share
(page faults, mostly) is reported apart. The last section profiles one epoch of each
loop (cProfile, top functions by own time).

    python benchmarks/train_throughput.py --data ../shared/datasets/banana_leaf --work /tmp/tput
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import pstats
import re
import resource
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torchvision import datasets
from torchvision.transforms import v2

from imgbalance._malloc import keep_freed_memory
from imgbalance.experiments import RunConfig, run_training
from imgbalance.torch.models import MEAN, STD, create_model

RESULTS = Path(__file__).parent / "results"
#: the loops timed, in turn: imgbalance's two data modes, the plain loop, and the plain
#: loop under imgbalance's allocator setting (how much of a difference is the allocator)
LOOPS = ("memory", "stream", "plain", "plain-kept")


def cpu_s() -> float:
    """CPU seconds of this process and of its reaped children (DataLoader workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def sys_s() -> float:
    """The share of :func:`cpu_s` spent in the kernel (page faults, mostly)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_stime + kids.ru_stime


def make_split(data: Path, work: Path) -> Path:
    """An imgbalance split of ``data`` with ImageFolder trees (copies) beside splits.csv."""
    out = work / "split"
    if not (out / "train").is_dir():
        subprocess.run(
            [
                str(Path(sys.executable).parent / "imgbalance"),
                "split", str(data), "--out", str(out), "--materialize", "copy", "--seed", "0",
            ],
            check=True,
        )  # fmt: skip
    return out


def imgbalance_run(
    split: Path,
    model: str,
    size: int,
    epochs: int,
    mode: str,
    seed: int,
    workers: int,
    out: Path,
    device: str = "cpu",
) -> dict[str, float]:
    logs: list[str] = []
    cfg = RunConfig.from_dict(
        {"data": str(split), "model": model, "image_size": size, "epochs": epochs,
         "monitor": "none", "augment": "light", "batch_size": 32, "seed": seed,
         "data_mode": mode, "workers": workers, "device": device}
    )  # fmt: skip
    c0, k0 = cpu_s(), sys_s()
    s = run_training(cfg, out / f"{model}-{mode}-{seed}", log=logs.append)
    cpu, kernel = cpu_s() - c0, sys_s() - k0
    decode = 0.0
    for line in logs:
        if m := re.search(r"training images at \d+px in (?:GPU )?memory after ([\d.]+) s", line):
            decode = float(m.group(1))
    if s["data"]["mode"] != mode:
        sys.exit(f"asked for data_mode={mode}, the run used {s['data']['mode']}")
    return {"loop_s": float(s["training_time_s"]), "decode_s": decode, "cpu_s": cpu,
            "sys_s": kernel}  # fmt: skip


def plain_loaders(
    split: Path, size: int, workers: int, seed: int, pin: bool = False
) -> tuple[Any, Any]:
    resize = v2.Resize((size, size), interpolation=v2.InterpolationMode.BILINEAR)
    tail = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)]
    train_tf = v2.Compose(
        [
            resize,
            v2.RandomHorizontalFlip(),
            v2.RandomAffine(degrees=10, translate=(0.05, 0.05), scale=(0.95, 1.05)),
            *tail,
        ]
    )
    train = datasets.ImageFolder(str(split / "train"), transform=train_tf)
    val = datasets.ImageFolder(str(split / "val"), transform=v2.Compose([resize, *tail]))
    common: dict[str, Any] = {
        "num_workers": workers, "persistent_workers": workers > 0, "pin_memory": pin,
    }  # fmt: skip
    g = torch.Generator().manual_seed(seed)
    train_dl = torch.utils.data.DataLoader(
        train, batch_size=32, shuffle=True, generator=g, **common
    )
    val_dl = torch.utils.data.DataLoader(val, batch_size=64, **common)
    return train_dl, val_dl


def plain_epoch(
    model: nn.Module, opt: Any, train_dl: Any, val_dl: Any, device: torch.device
) -> None:
    cuda = device.type == "cuda"
    fmt = torch.channels_last if cuda else torch.contiguous_format

    def inputs(x: torch.Tensor) -> torch.Tensor:
        return x.to(device, non_blocking=True).contiguous(memory_format=fmt)

    amp = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda)
    model.train()
    loss_fn = nn.CrossEntropyLoss()
    for x, y in train_dl:
        with amp:
            logits = model(inputs(x))
        loss = loss_fn(logits, y.to(device, non_blocking=True))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        for x, _ in val_dl:
            with amp:
                model(inputs(x)).float().softmax(1).cpu()


def plain_run(
    split: Path,
    model_name: str,
    size: int,
    epochs: int,
    seed: int,
    workers: int,
    device: str = "cpu",
) -> dict[str, float]:
    dev = torch.device(device)
    c0, k0 = cpu_s(), sys_s()
    t0 = time.perf_counter()
    train_dl, val_dl = plain_loaders(split, size, workers, seed, pin=dev.type == "cuda")
    torch.manual_seed(seed)
    model = create_model(model_name, len(train_dl.dataset.classes), None).to(dev)
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=5e-4, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.StepLR(opt, 15, 0.1)
    for _ in range(epochs):
        plain_epoch(model, opt, train_dl, val_dl, dev)
        sched.step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    loop = time.perf_counter() - t0
    n = len(train_dl.dataset)
    del train_dl, val_dl  # joins the persistent workers, so their CPU time is counted
    gc.collect()
    return {"loop_s": loop, "decode_s": 0.0, "cpu_s": cpu_s() - c0, "sys_s": sys_s() - k0,
            "n_train": n}  # fmt: skip


def profile(fn: Any, top: int = 12) -> str:
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).strip_dirs().sort_stats("tottime").print_stats(top)
    lines = [ln for ln in buf.getvalue().splitlines() if ln.strip()]
    start = next(i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls"))
    return "\n".join(lines[start : start + top + 1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="a class-folder dataset")
    ap.add_argument("--work", type=Path, required=True, help="scratch folder (outside the repo)")
    ap.add_argument("--models", default="small-cnn,resnet18")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--epochs", default="small-cnn=3,resnet18=1", help="epochs per model")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="torch threads (all loops)")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers / decode threads")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (every loop)")
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--json", type=Path, default=RESULTS / "train_throughput.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    epochs_of = dict(kv.split("=") for kv in args.epochs.split(","))
    split = make_split(args.data, args.work)
    runs = args.work / "runs"
    results: dict[str, Any] = {
        "command": "python " + " ".join(sys.argv),
        "dataset": args.data.name, "image_size": args.size, "batch_size": 32,
        "threads": args.threads, "workers": args.workers, "repeats": args.repeats,
        "torch": torch.__version__, "cpus": len(__import__("os").sched_getaffinity(0)),
        "device": args.device,
        "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None,
        "models": {},
    }  # fmt: skip
    for model in args.models.split(","):
        epochs = int(epochs_of.get(model, 1))
        raw: dict[str, list[dict[str, float]]] = {name: [] for name in LOOPS}
        for r in range(args.repeats):
            for name in raw:
                gc.collect()
                if name.startswith("plain"):
                    with keep_freed_memory() if name == "plain-kept" else nullcontext():
                        m = plain_run(split, model, args.size, epochs, r, args.workers,
                                      args.device)  # fmt: skip
                else:
                    m = imgbalance_run(split, model, args.size, epochs, name, r, args.workers,
                                       runs, args.device)  # fmt: skip
                raw[name].append(m)
                print(f"{model} {name} repeat {r + 1}: {json.dumps(m)}", flush=True)
        n_train = int(raw["plain"][0]["n_train"])
        seen = n_train * epochs
        table: dict[str, Any] = {"epochs": epochs, "train_images": n_train}
        for name, ms in raw.items():
            loop = statistics.median(m["loop_s"] for m in ms)
            e2e = statistics.median(m["loop_s"] + m["decode_s"] for m in ms)
            table[name] = {
                "loop_images_per_s": round(seen / loop, 2),
                "end_to_end_images_per_s": round(seen / e2e, 2),
                "median_loop_s": round(loop, 2),
                "median_decode_s": round(statistics.median(m["decode_s"] for m in ms), 2),
                "median_cpu_s": round(statistics.median(m["cpu_s"] for m in ms), 1),
                "median_sys_s": round(statistics.median(m["sys_s"] for m in ms), 1),
                "loop_s": [round(m["loop_s"], 2) for m in ms],
            }
        for name in ("memory", "stream", "plain-kept"):
            table[f"ratio_{name}_vs_plain"] = {
                "loop": round(
                    table[name]["loop_images_per_s"] / table["plain"]["loop_images_per_s"], 2
                ),
                "end_to_end": round(
                    table[name]["end_to_end_images_per_s"]
                    / table["plain"]["end_to_end_images_per_s"],
                    2,
                ),
            }
        results["models"][model] = table
        print(json.dumps({model: table}, indent=2), flush=True)
    if not args.no_profile:
        model = args.models.split(",")[0]
        results["profile_model"] = model
        results["profile"] = {
            name: profile(
                (lambda n=name: plain_run(split, model, args.size, 1, 0, args.workers, args.device))
                if name == "plain"
                else (
                    lambda n=name: imgbalance_run(
                        split,
                        model,
                        args.size,
                        1,
                        n,
                        0,
                        args.workers,
                        runs / "profile",
                        args.device,
                    )
                )
            )
            for name in ("memory", "stream", "plain")
        }
        for name, text in results["profile"].items():
            print(f"\n## profile: {name}, {model}, one epoch\n{text}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
