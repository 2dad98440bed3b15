"""Offline analysis: reads checkpoints and metric files only (never the training loop)."""
