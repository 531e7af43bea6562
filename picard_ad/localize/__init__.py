"""Generic localization, for any method: window grids, assembly, batched execution and the whole-image path.

``sliding_window_heatmap`` scores the windows of an image with any patch scorer and assembles a heatmap;
``resized_heatmap`` scores a whole image at a network's input size and maps the result back; ``BatchedExecutor``
runs a network's forwards in memory-sized batches, one single-threaded forward per core on the CPU. Nothing here
imports a method.
"""

from picard_ad.localize.assembly import assemble_heatmap
from picard_ad.localize.executor import BatchedExecutor, available_memory, reuse_freed_memory
from picard_ad.localize.heatmap import Heatmap, scored_windows, sliding_window_heatmap
from picard_ad.localize.settings import WindowSettings
from picard_ad.localize.whole_image import resized_heatmap
from picard_ad.localize.windows import WindowGrid, extract_windows, tissue_windows

__all__ = [
    "BatchedExecutor",
    "Heatmap",
    "WindowGrid",
    "WindowSettings",
    "assemble_heatmap",
    "available_memory",
    "extract_windows",
    "resized_heatmap",
    "reuse_freed_memory",
    "scored_windows",
    "sliding_window_heatmap",
    "tissue_windows",
]
