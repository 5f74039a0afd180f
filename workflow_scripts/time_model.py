from synthcal.cluster.jobwatch import guard_job

guard_job(snakemake)  # first: the job ends with its run, never beside an orphan of itself

from synthcal.evaluation.timing import time_model_from_files
from synthcal.workflow import job

with job(snakemake):
    time_model_from_files(snakemake.wildcards.model, snakemake.params.irs, snakemake.input.test, snakemake.output[0],
                          snakemake.params.timing)
