"""``analyze``, ``split`` and ``balance``: the commands that never import torch."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from .._fs import check_output_dir
from .._options import cli_flags
from .._text import shown
from ..dataset.catalog import Catalog
from ..dataset.images import DEFAULT_MAX_PIXELS
from ..errors import EXIT_ERROR, ImgBalanceError
from .common import (
    AddressOpt,
    DataArg,
    FollowLinksOpt,
    MaxPixelsOpt,
    VerifyOpt,
    WorkersOpt,
    app,
    check_backend,
    err_console,
    errors_to_exit,
    out_console,
    parse_params,
    parse_size,
    progress_bars,
    scan_with_progress,
)


@app.command()
@errors_to_exit
def analyze(
    data: DataArg,
    out: Annotated[
        Path | None,
        typer.Option(help="Write analysis.json, class_distribution.png and samples.png here."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print analysis JSON to stdout instead of tables.")
    ] = False,
    verify: VerifyOpt = False,
    strict: Annotated[bool, typer.Option(help="Exit 1 if any error or warning is found.")] = False,
    near_duplicates: Annotated[
        bool,
        typer.Option(
            help="Also report near-duplicate pairs by "
            "perceptual hash (approximate; decodes "
            "thumbnails)."
        ),
    ] = False,
    max_pixels: MaxPixelsOpt = DEFAULT_MAX_PIXELS,
    workers: WorkersOpt = None,
    overwrite: Annotated[
        bool, typer.Option(help="Replace earlier analysis files in --out.")
    ] = False,
    follow_links: FollowLinksOpt = False,
) -> None:
    """Count images per class, report both ratios and every problem in the files."""
    if out is not None:
        from ..reports.analysis import ANALYSIS_OUTPUTS, check_analysis_out

        check_output_dir(out, [data], overwrite=overwrite, replaces=ANALYSIS_OUTPUTS)
        check_analysis_out(out)  # before the scan: a stranger's file there is refused
    catalog = scan_with_progress(
        data,
        verify=verify,
        workers=workers,
        max_pixels=max_pixels,
        near_duplicates=near_duplicates,
        follow_links=follow_links,
    )
    from ..reports.analysis import analysis_json, print_analysis, write_analysis

    if as_json:
        sys.stdout.write(analysis_json(catalog))
    else:
        print_analysis(catalog, out_console, written_to=out)
    if out is not None:
        written = write_analysis(catalog, out)
        err_console.print("wrote " + shown(", ".join(str(p) for p in written)), highlight=False)
    empty = [c for c, n in catalog.counts().items() if n == 0]
    if empty:
        err_console.print(
            f"[yellow]Warning:[/] empty class folder(s): {shown(', '.join(empty))}",
            highlight=False,
        )
    if not catalog.usable():
        raise ImgBalanceError(
            f'"{data}" has {len(catalog.records)} image file(s) but no '
            "readable images; the table above says what is wrong with each."
        )
    if strict:
        errors = [p for p in catalog.problems if p.severity == "error"]
        warnings = [p for p in catalog.problems if p.severity == "warning"]
        if errors or warnings:
            first = f"first error: {errors[0]}" if errors else f"first warning: {warnings[0]}"
            err_console.print(
                f"[bold red]Error:[/] --strict allows no errors or warnings; {shown(data)} has "
                f"{len(errors)} error(s) and {len(warnings)} warning(s), {shown(first)}",
                highlight=False,
            )
            raise typer.Exit(EXIT_ERROR)


class Materialize(str, Enum):
    none = "none"
    link = "link"
    copy = "copy"


@app.command("split")
@errors_to_exit
def split_cmd(
    data: DataArg,
    out: Annotated[Path, typer.Option(help="Output folder for splits.csv (and trees).")],
    val: Annotated[float, typer.Option(help="Fraction of each class for validation.")] = 0.15,
    test: Annotated[float, typer.Option(help="Fraction of each class for test.")] = 0.15,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the split.")] = 42,
    group_by: Annotated[
        str | None,
        typer.Option(
            help="Regex over the relative path; its "
            "first capture group names the group "
            "(patient, leaf, slide)."
        ),
    ] = None,
    groups: Annotated[Path | None, typer.Option(help="CSV with columns path,group.")] = None,
    materialize: Annotated[
        Materialize,
        typer.Option(
            help="Also build out/train, out/val, "
            "out/test as ImageFolder trees (hard "
            "links, or copies)."
        ),
    ] = Materialize.none,
    overwrite: Annotated[
        bool, typer.Option(help="Replace earlier split outputs in --out.")
    ] = False,
    near_duplicates: Annotated[
        bool,
        typer.Option(
            help="Keep near duplicates (resized, re-encoded or slightly cropped "
            "copies, confirmed pixel by pixel) in one split too; decodes a "
            "thumbnail of every image."
        ),
    ] = True,
    verify: VerifyOpt = False,
    max_pixels: MaxPixelsOpt = DEFAULT_MAX_PIXELS,
    workers: WorkersOpt = None,
    follow_links: FollowLinksOpt = False,
) -> None:
    """Stratified train/val/test split; groups, exact and near duplicates never cross splits."""
    from ..dataset.splits import SPLIT_OUTPUTS, read_groups_csv, split, write_split
    from ..reports.analysis import print_split

    if group_by is not None and groups is not None:
        raise ImgBalanceError("Give --group-by or --groups, not both.")
    check_output_dir(out, [data], overwrite=overwrite, replaces=SPLIT_OUTPUTS)
    mapping = read_groups_csv(groups) if groups is not None else None
    catalog = scan_with_progress(
        data, verify=verify, workers=workers, max_pixels=max_pixels, follow_links=follow_links
    )
    result = split(
        catalog,
        val=val,
        test=test,
        random_state=seed,
        group_by=group_by,
        groups=mapping,
        near_duplicates=near_duplicates,
        workers=workers,
    )
    mode = None if materialize is Materialize.none else materialize.value
    summary = write_split(result, out, materialize=mode, overwrite=overwrite)
    print_split(result, summary, out_console)
    near = summary["near_duplicates"]
    if near["enabled"]:
        out_console.print(
            f"{near['pairs']} near-duplicate pair(s) kept in one split "
            f"({near['groups_merged']} group(s) joined; similarity >= {near['threshold']})"
        )
    for w in result.warnings:
        err_console.print(f"[yellow]Warning:[/] {shown(w)}", highlight=False)
    what = "splits.csv, split_summary.json, near_duplicates.csv" + (
        ", train/, val/, test/" if mode else ""
    )
    err_console.print(f"wrote {what} in {shown(out)}", highlight=False)


#: the keyword arguments of ``balance`` that are flags of the command, as errors name them
BALANCE_FLAGS = (
    "clean_originals",
    "features",
    "k_neighbors",
    "method",
    "neighbor_search",
    "overwrite",
    "resume",
    "small_class_fallback",
)


class OutFormat(str, Enum):
    keep = "keep"
    png = "png"
    jpg = "jpg"
    webp = "webp"


@app.command("balance")
@errors_to_exit
def balance_cmd(
    src: Annotated[
        Path,
        typer.Argument(
            help="Training images: one sub-folder per class. "
            "Split first; balance only the training split.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path | None, typer.Argument(help="Output folder (ImageFolder layout).", show_default=False)
    ] = None,
    method: Annotated[
        str,
        typer.Option(
            help="A method or a comma-separated pipeline, e.g. "
            "smote,enn,mixup. See `imgbalance methods`."
        ),
    ] = "smote",
    target: Annotated[
        str | None,
        typer.Option(
            help="auto | ratio:R | count:N | a YAML file "
            "mapping class to count (default: the "
            "method's own; auto for most)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(min=0, help="Seed of every random choice.")] = 0,
    features: Annotated[
        str,
        typer.Option(
            help="Planning feature space: thumbnail[:SIZE][:rgb|gray], "
            "embedding:MODEL[:WEIGHTS] (a torchvision model's penultimate layer; WEIGHTS is "
            "DEFAULT, a weights name or a .pth file; torch extra), with pca:N: before either "
            "to reduce."
        ),
    ] = "thumbnail",
    k_neighbors: Annotated[
        int | None, typer.Option(min=1, help="Neighbours for SMOTE-family methods (default 5).")
    ] = None,
    small_class_fallback: Annotated[
        str | None,
        typer.Option(
            help="A class with fewer than k+1 images: adapt (lower k; the default), error, "
            "random-over (copies) or augment (augmented copies)."
        ),
    ] = None,
    clean_originals: Annotated[
        str | None,
        typer.Option(
            help="Which originals ENN/Tomek may remove: majority (the default: only the largest "
            "class), all (imbalanced-learn's behaviour) or none."
        ),
    ] = None,
    neighbor_search: Annotated[
        str | None,
        typer.Option(
            help="How ENN/Tomek (and smote-enn, smote-tomek, stem) find neighbours: exact (the "
            "default; imbalanced-learn's answer, cost grows with the square of the images) or "
            "approximate (an HNSW graph from 10,000 rows on, near-linear; the ann extra)."
        ),
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option(help="Any method parameter, key=value (repeatable).")
    ] = None,
    fmt: Annotated[
        OutFormat,
        typer.Option(
            "--format",
            help="Format of synthetic images: keep the base parent's, png, jpg, or webp "
            "(lossless; files 15-25% smaller than png, slower to write).",
        ),
    ] = OutFormat.keep,
    png_compress_level: Annotated[
        str,
        typer.Option(
            help="How synthetic PNGs are compressed: fast (imgbalance's writer, about 3x "
            "faster than level 1, files about the same size) or a zlib level 0-9 for "
            "Pillow's encoder (6 is ~10% smaller and ~4x slower than 1). Lossless."
        ),
    ] = "fast",
    image_size: Annotated[
        str | None,
        typer.Option(
            help="Resize every output to WxH (STEM compatibility); originals are then re-encoded."
        ),
    ] = None,
    manifest_only: Annotated[
        bool,
        typer.Option(
            help="Write only synthetic images; the manifest references originals in place."
        ),
    ] = False,
    dry_run: Annotated[bool, typer.Option(help="Print the plan; write nothing.")] = False,
    plots: Annotated[
        bool,
        typer.Option(
            help="Draw preview.png and class_distribution.png (a fifth of the CPU time of a "
            "2,000-image job; --no-plots skips them)."
        ),
    ] = True,
    save_stages: Annotated[
        bool,
        typer.Option(
            help="Also write stages/<name>/manifest.csv for intermediate stages "
            "(stem: after_smote_enn)."
        ),
    ] = False,
    backend: Annotated[
        str, typer.Option(help="Render with local processes (default) or ray tasks.")
    ] = "local",
    address: AddressOpt = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run into OUT.")] = False,
    overwrite: Annotated[
        bool, typer.Option(help="Replace imgbalance's earlier outputs in OUT.")
    ] = False,
    workers: WorkersOpt = None,
    follow_links: FollowLinksOpt = False,
) -> None:
    """Balance the classes of SRC into OUT: plan on features, render at full resolution."""
    from ..balancing import balance
    from ..reports.analysis import print_balance

    params = parse_params(param or [], "--param")
    for key, value in (
        ("k_neighbors", k_neighbors),
        ("small_class_fallback", small_class_fallback),
        ("clean_originals", clean_originals),
        ("neighbor_search", neighbor_search),
    ):
        if value is not None:
            params[key] = value
    if out is None and not dry_run:
        raise ImgBalanceError("Give an output folder (OUT), or --dry-run to only see the plan.")
    with cli_flags(*BALANCE_FLAGS):  # errors name these flags, not keyword arguments
        source: Path | Catalog = src
        if follow_links:  # the library's scan does not follow links out of SRC by default
            source = scan_with_progress(
                src, verify=False, workers=workers, max_pixels=DEFAULT_MAX_PIXELS, follow_links=True
            )
        with progress_bars() as update:
            result = balance(
                source,
                out,
                method=method,
                target=target,
                random_state=seed,
                features=features,
                workers=workers,
                format=fmt.value,
                png_compress_level=int(png_compress_level)
                if png_compress_level.isdecimal()
                else png_compress_level,
                image_size=parse_size(image_size),
                manifest_only=manifest_only,
                overwrite=overwrite,
                resume=resume,
                dry_run=dry_run,
                plots=plots,
                save_stages=save_stages,
                backend=check_backend(backend),
                address=address,
                progress=update,
                **params,
            )
        print_balance(result, out_console)
        for note in result.plan.notes:
            err_console.print(f"[yellow]Note:[/] {shown(note)}", highlight=False)
        if dry_run:
            err_console.print("dry run: nothing was written", highlight=False)
        else:
            drawn = ", preview.png, class_distribution.png" if plots else ""
            err_console.print(
                f"wrote {shown(out)}/<class>/..., manifest.csv, summary.json, "
                f"balance_summary.txt{drawn}",
                highlight=False,
            )
