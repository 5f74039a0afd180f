from synthcal.cluster.jobwatch import guard_job

guard_job(snakemake)  # first: the job ends with its run, never beside an orphan of itself

from synthcal.report.page import build_report
from synthcal.workflow import job

with job(snakemake):
    build_report(snakemake.input, snakemake.output, snakemake.params.study, snakemake.params.config)
