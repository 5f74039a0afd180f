from synthcal.calibration.quality import quality_from_files
from synthcal.workflow import job

with job(snakemake):
    quality_from_files(snakemake.wildcards.model, snakemake.input, snakemake.output[0])
