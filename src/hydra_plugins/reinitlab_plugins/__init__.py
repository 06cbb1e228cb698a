"""reinitlab's Hydra plugins: a sweeper that adds the baseline jobs a reinit study needs, and a
launcher that runs jobs in parallel, one GPU slot each. Hydra only instantiates plugins that
live in the `hydra_plugins` namespace package, hence this package next to `reinitlab`.

Keep imports here light: Hydra imports every `hydra_plugins` module when it scans for plugins.
"""
