"""Stacked training: the variants of one (task, model, seed, data) cell trained together.

`plan` decides which jobs share a stack, `stacked` runs K members' stacked weights in one
forward (pure PyTorch), `module` is its Lightning glue and `run` trains and records one stack.
`hydra/launcher=stacked` (reinitlab_plugins.stacked_launcher) puts them behind a sweep.
"""
