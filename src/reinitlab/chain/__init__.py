"""Intermediate-task fine-tuning chains (BERT -> intermediate task(s) -> final task).

`plan_chain(cfg)` validates `intermediate` and `chain.*`; `run_chain(...)` trains or reuses each
intermediate stage from the shared stage cache and loads the encoder into the final model.
`run_chain` is imported on first use, so planning a chain does not pull in Lightning. The
transfer matrix of a chain study is the report's: `reinitlab report` (transfer.csv + figures),
`reinitlab.report.transfer.transfer_cells` in a notebook.
"""

from reinitlab.chain.plan import ChainPlan, ChainWarning, plan_chain

__all__ = ["ChainPlan", "ChainWarning", "plan_chain", "run_chain"]


def __getattr__(name: str):
    if name == "run_chain":
        from reinitlab.chain.stages import run_chain

        return run_chain
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
