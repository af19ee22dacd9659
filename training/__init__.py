"""Datasets, training (float, QAFT), and the accuracy table of issue 4: everything that learns or evaluates models."""
