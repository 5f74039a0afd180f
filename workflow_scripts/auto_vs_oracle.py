from synthcal.report.auto_oracle import write_auto_vs_oracle
from synthcal.workflow import job

with job(snakemake):
    write_auto_vs_oracle(snakemake.params.records, snakemake.output.csv, snakemake.params.report,
                         seed=snakemake.params.seed)
