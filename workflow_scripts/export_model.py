from synthcal.export import export_from_files
from synthcal.workflow import job

with job(snakemake):
    export_from_files(snakemake.wildcards.model, snakemake.input, snakemake.output, snakemake.params.export)
