"""Floor 5, turning measurements into reports (SPEC.md sections 19-21): benchmark files and their comparison
(compare), the claims registry and its verdicts (claims), the resource table of the shipped models
(resource_table) and the HTML/Markdown report (report, templates/). Committed outputs live beside the code
(reports/accuracy/, reports/benchmarks/, reports/claims.toml); generated ones in reports/out/ (not committed)."""
