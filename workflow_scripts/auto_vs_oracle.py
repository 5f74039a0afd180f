from synthcal.cluster.jobwatch import guard_job

guard_job(snakemake)  # first: the job ends with its run, never beside an orphan of itself

from synthcal.report.auto_oracle import write_auto_vs_oracle
from synthcal.workflow import job

with job(snakemake):
    write_auto_vs_oracle(snakemake.params.records, snakemake.output.csv, snakemake.params.report,
                         seed=snakemake.params.seed)
