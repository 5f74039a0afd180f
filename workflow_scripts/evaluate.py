from synthcal.cluster.jobwatch import guard_job

guard_job(snakemake)  # first: the job ends with its run, never beside an orphan of itself

from synthcal.evaluation.evaluate import evaluate_from_files
from synthcal.workflow import job

with job(snakemake):
    evaluate_from_files(snakemake.input, snakemake.output, snakemake.params.evaluation)
