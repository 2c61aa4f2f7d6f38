"""Training: DPO settings, the TRL run (in-process or through accelerate), the adapter registry."""
