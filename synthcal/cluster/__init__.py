"""Running the workflow: SLURM profile helpers (``slurm``) and the one-run-per-directory guard (``runguard``)."""
