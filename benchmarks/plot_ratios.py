"""The ratio table of the performance benchmarks, and its plot, from their committed results.

Reads ``results/*.json`` (written by the benchmark scripts; nothing is measured
here) and writes ``results/ratios.md`` and ``results/ratios.png``: for each
comparison, how many times faster imgbalance was than the peer measured in the
same run, and how many times less memory it used (above 1: imgbalance is
better). Usage::

    python benchmarks/plot_ratios.py
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
TIMES = "\u00d7"


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def ratios() -> list[dict[str, Any]]:
    """Rows of ``(comparison, peer, speed ratio, memory ratio, source)``."""
    rows: list[dict[str, Any]] = []

    def add(comparison: str, peer: str, source: str, speed: float, memory: float | None) -> None:
        rows.append({"comparison": comparison, "peer": peer, "speed": speed, "memory": memory,
                     "source": f"{source}.json"})  # fmt: skip

    def vs(peer: dict[str, Any], ours: dict[str, Any]) -> tuple[float, float]:
        """How many times faster, and how many times less memory, than ``peer``."""
        return peer["wall_s"] / ours["wall_s"], peer["peak_rss_mib"] / ours["peak_rss_mib"]

    if scan := _load("scan_throughput"):
        for tree, res in scan["trees"].items():
            speed = res["imgbalance scan (2 processes)"]["speedup_vs_decode_loop"]
            add(f"scan, {tree.split(' (')[0]}", "decode every file with Pillow",
                "scan_throughput", speed, None)  # fmt: skip
    # balance_throughput and balance_scaling compared with the tutorial way in uint8, whose
    # output is wrong (peers/smote_tutorial.py); balance_floor's peers replace them here
    if floor := _load("balance_floor"):
        c, pss = floor["contenders"], floor["tree_pss_mib"]
        ours = c["imgbalance smote"]
        job = f"SMOTE CLI job, {floor['images']:,} RGB JPEGs"
        if "tutorial float32" in c:
            add(f"{job} vs the tutorial",
                "tutorial: imbalanced-learn SMOTE on flattened 224x224 float32", "balance_floor",
                c["tutorial float32"]["wall_s"] / ours["wall_s"],
                pss["tutorial float32"] / pss["imgbalance smote"])  # fmt: skip
        add(f"{job} vs a careful script", "smart peer: SMOTE on 16x16 thumbnails, Image.blend",
            "balance_floor", c["smart peer"]["wall_s"] / ours["wall_s"],
            pss["smart peer"] / pss["imgbalance smote"])  # fmt: skip
        add(f"{job}, CPU vs its floor", "true floor: each parent decoded once, each output once",
            "balance_floor", c["floor smote"]["floor_cpu_s"] / ours["cpu_s"], None)  # fmt: skip
        if png := c.get("imgbalance smote --no-plots, PNG input"):
            add(f"SMOTE CLI job, the same {floor['images']:,} as PNG, CPU vs its floor",
                "true floor on PNG: full decodes, the fast PNG writer", "balance_floor",
                c["floor smote, PNG input"]["floor_cpu_s"] / png["cpu_s"], None)  # fmt: skip
    if emb := _load("embedding_features"):
        add(f"embedding features, {emb['data']}, {emb['model']}",
            "torchvision ImageFolder + DataLoader(num_workers=2)", "embedding_features",
            emb["imgbalance_over_plain_images_per_s"], None)  # fmt: skip
    if stem := _load("stem_vs_reference"):
        ref = stem["results"].get("reference")
        for name in ("imgbalance 256", "imgbalance native"):
            ours = stem["results"].get(name)
            if ref and ours and ref.get("wall_s"):
                add(f"STEM, {stem['input_images']} images, {name.split()[1]} (*)",
                    "re-implementation of the STEM reference", "stem_vs_reference",
                    *vs(ref, ours))  # fmt: skip
    if ray := _load("ray_backend"):
        add(f"render on Ray, {ray['machine']['cpus']} CPUs", "imgbalance's local process pool",
            "ray_backend", ray["ray_over_local_throughput"], None)  # fmt: skip
    return rows


def main() -> None:
    rows = ratios()
    lines = [
        "# Performance ratios (written by `plot_ratios.py` from the JSON files here)",
        "",
        "Above 1: imgbalance is faster, or uses less memory, than the peer in the same run.",
        "(*) The STEM reference shared the machine with other work; see the README.",
        "",
        "| comparison | peer | speed ratio | memory ratio | source |",
        "|---|---|---:|---:|---|",
    ]
    for r in rows:
        mem = f"{r['memory']:.1f}{TIMES}" if r["memory"] else "n/a"
        speed = f"{r['speed']:.2f}" if r["speed"] < 10 else f"{r['speed']:.0f}"
        lines.append(
            f"| {r['comparison']} | {r['peer']} | {speed}{TIMES} | {mem} | {r['source']} |"
        )
    (RESULTS / "ratios.md").write_text("\n".join(lines) + "\n", encoding="utf-8")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 0.45 * len(rows) + 1.6), sharey=True)
    names = [r["comparison"] for r in rows][::-1]
    speed = [r["speed"] for r in rows][::-1]
    memory = [r["memory"] or 0 for r in rows][::-1]
    ax1.barh(names, speed, color=["#4C72B0" if s >= 1 else "#C44E52" for s in speed])
    ax2.barh(names, memory, color=["#55A868" if m >= 1 else "#C44E52" for m in memory])
    for ax, values, title in (
        (ax1, speed, "speed: peer time / imgbalance time"),
        (ax2, memory, "memory: peer peak / imgbalance peak"),
    ):
        ax.axvline(1, color="black", lw=0.8)
        ax.set_xscale("log")
        top = max([v for v in values if v] + [2.0])
        ax.set_xlim(0.3, top * 3)
        ticks = [t for t in (0.5, 1, 2, 5, 10, 20, 100, 1000) if t <= top * 3]
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_minor_locator(FixedLocator([]))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda t, _pos: f"{t:g}{TIMES}"))
        ax.set_title(title, fontsize=10)
        for y, v in enumerate(values):
            if v:
                label = f" {v:.2f}{TIMES}" if v < 10 else f" {v:.0f}{TIMES}"
                ax.text(v, y, label, va="center", fontsize=8)
    ax1.tick_params(axis="y", labelsize=8)
    if any("(*)" in n for n in names):
        fig.text(0.01, 0.01, "(*) the STEM reference shared the machine with other work: "
                 "benchmarks/README.md", fontsize=7)  # fmt: skip
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(RESULTS / "ratios.png", dpi=120)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
