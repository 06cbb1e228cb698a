"""One fine-tuning run: the job builder, the model and Lightning module, metrics, the reinit
callback, preemption/resume, seeds and the result record."""
