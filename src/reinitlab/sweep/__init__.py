"""A study's bookkeeping: the sweep ledger, job identity, the job's claim, status, GPU slots."""
