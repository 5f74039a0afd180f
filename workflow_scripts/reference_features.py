from synthcal.calibration.quality import reference_features_from_files
from synthcal.workflow import job

with job(snakemake):
    reference_features_from_files(snakemake.input, snakemake.output[0])
