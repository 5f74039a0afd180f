from synthcal.cluster.jobwatch import guard_job

guard_job(snakemake)  # first: the job ends with its run, never beside an orphan of itself

from synthcal.models.export import fetch_from_files
from synthcal.workflow import job

with job(snakemake):
    fetch_from_files(snakemake.params.model["name"], snakemake.params.model["entry"], snakemake.config["cache_dir"],
                     snakemake.output, seed=snakemake.params.seed)
