from synthcal.models.export import export_from_files
from synthcal.workflow import job

with job(snakemake):
    export_from_files(snakemake.params.model["name"], snakemake.params.model["entry"], snakemake.input,
                      snakemake.output, snakemake.params.export)
