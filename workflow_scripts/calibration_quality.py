from synthcal.cluster.jobwatch import guard_job

guard_job(snakemake)  # first: the job ends with its run, never beside an orphan of itself

from synthcal.calibration.quality import quality_from_files
from synthcal.workflow import job

with job(snakemake):
    quality_from_files(snakemake.wildcards.model, snakemake.input, snakemake.output[0])
