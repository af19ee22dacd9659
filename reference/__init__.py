"""Floor 0, the float64 S4D reference (SPEC.md sections 2-7, 9, 11): layer math, initialisation, configs, the
classifier with its convolution, recurrence and streaming paths, model files, test-vector families, input
validation and the error metrics. Imports nothing else of s4dconf; every other package builds on it."""
