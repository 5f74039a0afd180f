from synthcal.evaluation.evaluate import evaluate_from_files
from synthcal.workflow import job

with job(snakemake):
    evaluate_from_files(snakemake.input, snakemake.output, snakemake.params.evaluation)
