"""Floor 4, the pytest conformance suite (SPEC.md sections 8-13): the plugin (options, header, backend selection),
the harness (tolerance table, records, skip lists), the tests, meta/ (tests of the suite itself) and benchmarks/."""
