from synthcal.calibration import calibration_set_from_files
from synthcal.workflow import job

with job(snakemake):
    calibration_set_from_files(snakemake.wildcards.calib, snakemake.params.spec, snakemake.input, snakemake.output,
                               model_name=getattr(snakemake.wildcards, "model", None),
                               deploy_repvgg=getattr(snakemake.params, "deploy_repvgg", False))
