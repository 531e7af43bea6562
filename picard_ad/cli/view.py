"""``picard-ad view``: one self-contained HTML viewer of an output folder's heatmaps."""

from __future__ import annotations

from pathlib import Path

import click

from picard_ad.cli.options import given, settings_options


def _callback(out_dir: Path, out: Path | None, **flags) -> None:
    from picard_ad.config import from_dict
    from picard_ad.report.viewer import ViewerConfig, collect_view, write_viewer

    config = from_dict(ViewerConfig, given(flags, ViewerConfig), where="options")
    viewer = collect_view(out_dir, config)
    for note in viewer.notes:
        click.echo(f"picard-ad: note: {note}", err=True)
    path = write_viewer(viewer, out or out_dir / "viewer.html")
    n_slices = sum(len(item.slices) for item in viewer.items)
    click.echo(f"wrote {path}: {len(viewer.items)} image(s), {n_slices} slice(s); open it in a browser")


def _options() -> list[click.Option]:
    from picard_ad.report.viewer import ViewerConfig

    return settings_options(ViewerConfig)


command = click.Command(
    "view",
    params=[
        click.Argument(["out_dir"], type=click.Path(path_type=Path)),
        click.Option(["--out"], type=click.Path(path_type=Path), help="HTML file to write [OUT_DIR/viewer.html]."),
        *_options(),
    ],
    callback=_callback,
    help="""Write one self-contained HTML file to look at the heatmaps of OUT_DIR (picard-ad heatmap's output).

    Per image or volume: the image with a slice slider, the heatmap over it with opacity and threshold sliders
    (threshold in score units), annotation outlines, the per-image metrics of a picard-ad evaluate run found in
    OUT_DIR (or --evaluation), and the method and settings from the sidecars. Nothing is fetched from the
    network; large images are reduced for display.
    """,
)  # fmt: skip
