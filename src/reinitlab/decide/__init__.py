"""Adaptive seeds: a study as a set of decisions (better, worse, equivalent, undecided) per
variant against its paired baseline, with seeds added in stages only where undecided."""
