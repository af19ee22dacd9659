"""Floor 2, the golden outputs (SPEC.md sections 10 and 14.7): which steps and channels are stored (select), the
float64 cases and the golden set on disk with generate/load/verify (store), the integer cases (integer), and the
files themselves (data/). Imports `reference` and `fixedpoint`."""
