"""``picard-ad benchmark``: compare anomaly methods on one dataset split, with a self-contained HTML report."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("benchmark")
@click.option("--config", "config_path", required=True, type=click.Path(path_type=Path),
              help="YAML file with 'data', 'methods' (list of {name, config}) and 'seed'.")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Output folder: report.html, metrics.json, metrics.md, fitted methods and cached score maps.")
@click.option("--quiet", is_flag=True, help="No progress lines.")
def command(config_path: Path, out: Path, quiet: bool) -> None:
    """Fit each method on the normal training images, score the test images and compare them.

    The trivial references (brightness, local-contrast) always run; a method that does not beat the best of them
    on tissue pixel AUROC is flagged. Rerunning with the same --out reuses fitted methods and cached score maps.
    """
    from picard_ad.benchmark import HEADLINE, BenchmarkConfig, run_benchmark
    from picard_ad.config import load_config, save_config
    from picard_ad.report.html import write_benchmark_report

    config = load_config(BenchmarkConfig, config_path)
    out.mkdir(parents=True, exist_ok=True)
    save_config(config, out / "config.yaml")
    result = run_benchmark(config, out, progress=None if quiet else click.echo)
    write_benchmark_report(result, out)
    for method in result.methods:
        auroc = method.metrics[HEADLINE]
        flag = "  (does not beat the best reference)" if method.beats_references is False else ""
        click.echo(f"{method.name}: tissue pixel AUROC {auroc:.3f}{flag}")
    click.echo(f"wrote report.html, metrics.json and metrics.md to {out}")
