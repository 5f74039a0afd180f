from synthcal.report.page import build_report
from synthcal.workflow import job

with job(snakemake):
    build_report(snakemake.input, snakemake.output, snakemake.params.study, snakemake.params.config)
