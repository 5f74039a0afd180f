from synthcal.cluster.jobwatch import guard_job

guard_job(snakemake)  # first: the job ends with its run, never beside an orphan of itself

from synthcal.calibration.quality import generator_quality_from_files
from synthcal.workflow import job

with job(snakemake):
    generator_quality_from_files(snakemake.params.judge, snakemake.input, snakemake.output[0],
                                 per_class=snakemake.params.per_class)
