from synthcal.evaluation.auto_candidates import evaluate_candidates_from_files
from synthcal.workflow import job

with job(snakemake):
    evaluate_candidates_from_files(snakemake.input, snakemake.output, snakemake.params.evaluation)
