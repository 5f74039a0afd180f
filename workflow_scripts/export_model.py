from synthcal.cluster.jobwatch import guard_job

guard_job(snakemake)  # first: the job ends with its run, never beside an orphan of itself

from synthcal.models.export import export_from_files
from synthcal.workflow import job

with job(snakemake):
    export_from_files(snakemake.params.model["name"], snakemake.params.model["entry"], snakemake.input,
                      snakemake.output, snakemake.params.export)
