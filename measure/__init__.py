"""Floor 3, what is measured or counted beside time (SPEC.md sections 19-20): energy meters for the benchmarks
(energy) and the analytic operation and resource model of a config on Loihi 2 (resources). Imports the floors
below (`reference`, `fixedpoint`, `backends`), never the suite, training or reports."""
