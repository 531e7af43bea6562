"""Readers, writers and annotations for medical image formats."""
