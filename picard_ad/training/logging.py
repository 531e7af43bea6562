"""Training logs: CSV files, TensorBoard scalars, a loss-curve PNG and a grid of sample completions.

``RUN_DIR/train_log.csv`` has one row per ``log_every`` iterations (losses averaged over the interval) and
``RUN_DIR/validation.csv`` one row per validation. On resume, rows after the checkpoint's step are dropped, since
those iterations are run again.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from picard_ad.errors import MissingDependencyError
from picard_ad.io.writers import atomic_path, atomic_write_text

TRAIN_COLUMNS = (
    "step", "d_loss", "wgan_d", "gp", "g_loss", "l1", "ae", "wgan_g", "patches_per_s", "elapsed_s",
)  # fmt: skip
VALIDATION_COLUMNS = ("step", "val_l1", "best_val_l1")


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
        tensorboard: also write TensorBoard event files to ``run_dir/tensorboard``.
        resume_step: the step a resumed run continues from (None: a new run).
    """

    def __init__(self, run_dir: Path, *, tensorboard: bool, resume_step: int | None):
        self.run_dir = run_dir
        self.train = CsvLog(run_dir / "train_log.csv", TRAIN_COLUMNS, resume_step)
        self.validation = CsvLog(run_dir / "validation.csv", VALIDATION_COLUMNS, resume_step)
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

    def log_validation(self, step: int, val_l1: float, best_val_l1: float) -> None:
        self.validation.append({"step": step, "val_l1": val_l1, "best_val_l1": best_val_l1})
        if self._writer is not None:
            self._writer.add_scalar("validation/l1", val_l1, step)

    def log_samples(self, step: int, grid: np.ndarray) -> None:
        if self._writer is not None:
            self._writer.add_image("samples", np.clip(grid, 0, 1)[None], step, dataformats="CHW")

    def write_loss_curve(self, path: Path) -> None:
        plot_loss_curve(self.train, self.validation, path)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def plot_loss_curve(train: CsvLog, validation: CsvLog, path: Path) -> None:
    """Two panels, written atomically as PNG: reconstruction losses with held-out L1, and the critic's terms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for column, label in (("l1", "hole L1 (train, discounted)"), ("ae", "known-region L1 (train)")):
        steps, values = train.series(column)
        if len(steps):
            left.plot(steps, values, label=label, linewidth=1)
    steps, values = validation.series("val_l1")
    if len(steps):
        left.plot(steps, values, "o-", label="held-out hole L1 ([0, 1] units)", markersize=3)
    left.set_yscale("log")
    left.set_xlabel("iteration")
    left.set_title("completion losses")
    for column, label in (("wgan_d", "critic Wasserstein term"), ("gp", "gradient penalty")):
        steps, values = train.series(column)
        if len(steps):
            right.plot(steps, values, label=label, linewidth=1)
    right.set_xlabel("iteration")
    right.set_title("critic losses")
    for axis in (left, right):
        if axis.lines:
            axis.legend(fontsize=8)
        axis.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def sample_grid(masked: np.ndarray, completion: np.ndarray, truth: np.ndarray, gap: int = 2) -> np.ndarray:
    """(rows * (P + gap), 3 * (P + gap)) image: per sample [masked input | completion | ground truth].

    Args:
        masked, completion, truth: (N, P, P) float arrays in [0, 1].
    """
    n, size, _ = truth.shape
    cell = size + gap
    grid = np.ones((n * cell - gap, 3 * cell - gap), dtype=np.float32)
    for row in range(n):
        for column, image in enumerate((masked[row], completion[row], truth[row])):
            grid[row * cell : row * cell + size, column * cell : column * cell + size] = image
    return grid


def write_sample_grid(path: Path, grid: np.ndarray, title: str) -> None:
    """Save a ``sample_grid`` with column titles as PNG, atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    height, width = grid.shape
    scale = max(1.0, 384 / width)
    fig = plt.figure(figsize=(width * scale / 100, height * scale / 100 + 0.5), dpi=100)
    axis = fig.add_axes((0, 0, 1, height * scale / (height * scale + 50)))
    axis.imshow(np.clip(grid, 0, 1), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    axis.set_axis_off()
    for column, label in enumerate(("masked input", "completion", "ground truth")):
        fig.text((column + 0.5) / 3, 1 - 12 / (height * scale + 50), label, ha="center", va="top", fontsize=9)
    fig.text(0.5, 1 - 30 / (height * scale + 50), title, ha="center", va="top", fontsize=8, color="0.3")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
