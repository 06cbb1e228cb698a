"""Intermediate-task fine-tuning chains (BERT -> intermediate task(s) -> final task).

`plan_chain(cfg)` validates `intermediate` and `chain.*`; `run_chain(...)` trains or reuses each
intermediate stage from the shared stage cache and loads the encoder into the final model;
`reinitlab.chain.matrix` turns result records into the transfer matrix (table + figure).
"""

from reinitlab.chain.plan import ChainPlan, ChainWarning, plan_chain
from reinitlab.chain.stages import run_chain

__all__ = ["ChainPlan", "ChainWarning", "plan_chain", "run_chain"]
