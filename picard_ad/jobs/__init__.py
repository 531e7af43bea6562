"""The library side of the command set: what ``picard-ad fit`` and ``picard-ad heatmap`` do, for any method.

``fit`` (resolving a method's training config from a preset, a YAML file and flags, then fitting it into a run
folder) and ``heatmap`` (heatmaps, overlays and sidecars of many inputs, resumable). The CLI modules only parse
options and print.
"""
