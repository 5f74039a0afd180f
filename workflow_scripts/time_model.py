from synthcal.evaluation.timing import time_model_from_files
from synthcal.workflow import job

with job(snakemake):
    time_model_from_files(snakemake.wildcards.model, snakemake.params.irs, snakemake.input.test, snakemake.output[0],
                          snakemake.params.timing)
