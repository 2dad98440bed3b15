"""Reproducible measurements of parle_hpc against SGD, data-parallel SGD, the reference
implementation and the machine's limits. Run ``make bench`` (full) or ``make bench-quick``;
the report is docs/benchmarks.md. Nothing here is a timed test: every benchmark prints
ratios measured side by side in one run."""
