"""Anomaly methods behind one small interface, and trivial reference heatmaps."""
