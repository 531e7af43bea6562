"""``picard-ad benchmark``: compare anomaly methods on one dataset split, with a self-contained HTML report."""

from __future__ import annotations

import functools
from pathlib import Path

import click

from picard_ad.cli.options import given, settings_options


@click.command("benchmark")
@click.option("--config", "config_path", required=True, type=click.Path(path_type=Path),
              help="YAML file with 'data', 'methods' (list of {name, config}) and 'seed'.")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Output folder: report.html, metrics.json, metrics.md, fitted methods and cached score maps.")
@click.option("--quiet", is_flag=True, help="No progress lines.")
def command(config_path: Path, out: Path, quiet: bool, **cluster_flags) -> None:
    """Fit each method on the normal training images, score the test images and compare them.

    The trivial references (brightness, local-contrast) always run; a method that does not beat the best of them
    on tissue pixel AUROC is flagged. Rerunning with the same --out reuses fitted methods and cached score maps.
    """
    from picard_ad.benchmark import HEADLINE, BenchmarkConfig, run_benchmark
    from picard_ad.benchmark.cache import ScoreTask
    from picard_ad.config import from_dict, load_config, save_config
    from picard_ad.jobs.ray_cluster import RayPool, RaySettings, ray_session
    from picard_ad.report.html import write_benchmark_report

    config = load_config(BenchmarkConfig, config_path)
    cluster = from_dict(RaySettings, given(cluster_flags, RaySettings), where="options")
    out.mkdir(parents=True, exist_ok=True)
    save_config(config, out / "config.yaml")
    say = None if quiet else click.echo
    if cluster.ray is None:
        result = run_benchmark(config, out, progress=say)
    else:
        with ray_session(cluster):
            result = run_benchmark(config, out, progress=say, make_pool=lambda scorer: RayPool(
                functools.partial(ScoreTask, scorer), cluster.ray_workers))  # fmt: skip
    write_benchmark_report(result, out)
    for method in result.methods:
        auroc = method.metrics[HEADLINE]
        flag = "  (does not beat the best reference)" if method.beats_references is False else ""
        click.echo(f"{method.name}: tissue pixel AUROC {auroc:.3f}{flag}")
    click.echo(f"wrote report.html, metrics.json and metrics.md to {out}")


def _cluster_options() -> list[click.Option]:
    """--ray [ADDRESS] and --ray-workers: the score maps computed on a Ray cluster."""
    from picard_ad.jobs.ray_cluster import RaySettings

    return settings_options(RaySettings)


command.params.extend(_cluster_options())
