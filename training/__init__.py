"""Floor 4, datasets, training (float, QAFT), the shipped models' recipes and the accuracy table (SPEC.md section
18): everything that learns or evaluates models. Imports the floors below (`reference`, `fixedpoint`, `backends`)."""
