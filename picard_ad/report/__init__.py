"""Plots, montages and reports."""
