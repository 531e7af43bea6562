"""Sliding-window localization: window grids, batching and heatmap assembly."""
