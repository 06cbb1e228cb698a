"""`reinitlab report`: from finished sweeps (result records) to tables, figures and one HTML page.

collect: records and job dirs -> a flat runs table plus the failed/missing jobs;
stats: aggregates, paired deltas vs the baseline, tests and Holm correction;
figures: matplotlib figures (PNG + SVG); html: the self-contained page; cli: the command.
"""
