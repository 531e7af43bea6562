"""Training logs: CSV files, TensorBoard scalars, a loss-curve PNG and grids of samples of what the networks do.

``RUN_DIR/train_log.csv`` has one row per ``log_every`` iterations (losses averaged over the interval) and
``RUN_DIR/validation.csv`` one row per validation. On resume, rows after the checkpoint's step are dropped, since
those iterations are run again.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from picard_ad.errors import MissingDependencyError
from picard_ad.io.writers import atomic_path, atomic_write_text
from picard_ad.training.step import CurvePanel, SampleGrid


def _read_rows(path: Path, upto_step: int | None) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [row for row in rows if upto_step is None or int(row["step"]) <= upto_step]


def _format(value: float | None) -> str:
    if value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    return f"{value:.6g}"


class CsvLog:
    """An append-only CSV with fixed columns; resuming at ``resume_step`` keeps only rows up to it."""

    def __init__(self, path: Path, columns: tuple[str, ...], resume_step: int | None):
        self.path = path
        self.columns = columns
        self.rows = _read_rows(path, resume_step) if resume_step is not None else []
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(path, buffer.getvalue())

    def append(self, values: dict[str, float | int | None]) -> None:
        row = {column: _format(values.get(column)) for column in self.columns}
        self.rows.append(row)
        with self.path.open("a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=self.columns, lineterminator="\n").writerow(row)

    def series(self, column: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of the rows where ``column`` is filled in."""
        pairs = [(int(row["step"]), float(row[column])) for row in self.rows if row.get(column)]
        if not pairs:
            return np.zeros(0, dtype=int), np.zeros(0)
        steps, values = zip(*pairs)
        return np.asarray(steps), np.asarray(values)


class TrainingLog:
    """Everything a training run records besides checkpoints (rank 0 only).

    Args:
        run_dir: the run folder.
        loss_names: the losses of the method's training step (columns of ``train_log.csv``).
        validation_name: the held-out metric (columns ``NAME`` and ``best_NAME`` of ``validation.csv``).
        tensorboard: also write TensorBoard event files to ``run_dir/tensorboard``.
        resume_step: the step a resumed run continues from (None: a new run).
    """

    def __init__(
        self,
        run_dir: Path,
        loss_names: Sequence[str],
        validation_name: str,
        *,
        tensorboard: bool,
        resume_step: int | None,
    ):
        self.run_dir = run_dir
        self.validation_name = validation_name
        self.train = CsvLog(run_dir / "train_log.csv", ("step", *loss_names, "samples_per_s", "elapsed_s"), resume_step)
        columns = ("step", validation_name, f"best_{validation_name}")
        self.validation = CsvLog(run_dir / "validation.csv", columns, resume_step)
        self._writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise MissingDependencyError(
                    "tensorboard", "TensorBoard logging (or set tensorboard: false in the config)"
                ) from None
            self._writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=resume_step)

    def log_training(self, step: int, values: dict[str, float | None]) -> None:
        self.train.append({"step": step, **values})
        if self._writer is not None:
            for name, value in values.items():
                if value is not None and math.isfinite(value):
                    self._writer.add_scalar(f"train/{name}", value, step)

    def log_validation(self, step: int, value: float, best: float) -> None:
        self.validation.append({"step": step, self.validation_name: value, f"best_{self.validation_name}": best})
        if self._writer is not None:
            self._writer.add_scalar(f"validation/{self.validation_name}", value, step)

    def log_samples(self, step: int, grid: SampleGrid) -> None:
        if self._writer is not None:
            self._writer.add_image("samples", np.clip(grid.image, 0, 1)[None], step, dataformats="CHW")

    def write_loss_curve(self, path: Path, panels: Sequence[CurvePanel]) -> None:
        plot_loss_curve(self.train, self.validation, self.validation_name, panels, path)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def plot_loss_curve(
    train: CsvLog, validation: CsvLog, validation_name: str, panels: Sequence[CurvePanel], path: Path
) -> None:
    """One panel per ``CurvePanel`` (the held-out metric in those that ask for it), written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(panels) or [CurvePanel("losses", (), with_validation=True)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for axis, panel in zip(axes[0], panels):
        for column, label in panel.columns:
            steps, values = train.series(column)
            if len(steps):
                axis.plot(steps, values, label=label, linewidth=1)
        if panel.with_validation:
            steps, values = validation.series(validation_name)
            if len(steps):
                axis.plot(steps, values, "o-", label=f"held-out {validation_name}", markersize=3)
        if panel.log_scale:
            axis.set_yscale("log")
        axis.set_xlabel("iteration")
        axis.set_title(panel.title)
        if axis.lines:
            axis.legend(fontsize=8)
        axis.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def side_by_side(*columns: np.ndarray, gap: int = 2) -> np.ndarray:
    """(rows * (P + gap) - gap, n * (P + gap) - gap) image: per sample the columns side by side.

    Args:
        columns: each (N, P, P) float arrays in [0, 1], e.g. masked input, completion, ground truth.
    """
    n, size, _ = columns[0].shape
    cell = size + gap
    grid = np.ones((n * cell - gap, len(columns) * cell - gap), dtype=np.float32)
    for row in range(n):
        for column, images in enumerate(columns):
            grid[row * cell : row * cell + size, column * cell : column * cell + size] = images[row]
    return grid


def write_sample_grid(path: Path, grid: SampleGrid, title: str) -> None:
    """Save a sample grid with its column titles as PNG, atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    height, width = grid.image.shape
    n_columns = max(1, len(grid.column_titles))
    scale = max(1.0, 128 * n_columns / width)
    fig = plt.figure(figsize=(width * scale / 100, height * scale / 100 + 0.5), dpi=100)
    axis = fig.add_axes((0, 0, 1, height * scale / (height * scale + 50)))
    axis.imshow(np.clip(grid.image, 0, 1), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    axis.set_axis_off()
    for column, label in enumerate(grid.column_titles):
        fig.text((column + 0.5) / n_columns, 1 - 12 / (height * scale + 50), label, ha="center", va="top", fontsize=9)
    fig.text(0.5, 1 - 30 / (height * scale + 50), title, ha="center", va="top", fontsize=8, color="0.3")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
