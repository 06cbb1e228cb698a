"""One fine-tuning run: the pieces a run is built from (builder), the model and Lightning
module, metrics, the head-on-layer option, the reinit callback, preemption/resume, seeds and
the result record. The job builder that composes them with chains, probing and weight movement
is `reinitlab.job`, a layer above (docs/architecture.md)."""
