"""Turning measurements into reports (issue 6): benchmark comparison, energy meters, the operation and resource
model, the claims registry and the HTML/Markdown report. Committed outputs live beside the code
(reports/accuracy/, reports/benchmarks/, reports/claims.toml); generated ones in reports/out/ (not committed)."""
