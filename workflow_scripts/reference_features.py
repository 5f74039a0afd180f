from synthcal.cluster.jobwatch import guard_job

guard_job(snakemake)  # first: the job ends with its run, never beside an orphan of itself

from synthcal.calibration.quality import reference_features_from_files
from synthcal.workflow import job

with job(snakemake):
    reference_features_from_files(snakemake.input, snakemake.output[0])
