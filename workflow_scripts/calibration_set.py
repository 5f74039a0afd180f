from synthcal.cluster.jobwatch import guard_job

guard_job(snakemake)  # first: the job ends with its run, never beside an orphan of itself

from synthcal.calibration import calibration_set_from_files
from synthcal.models.preprocessing import parse_size_name
from synthcal.workflow import job

with job(snakemake):
    calibration_set_from_files(snakemake.wildcards.calib, snakemake.params.spec, snakemake.input, snakemake.output,
                               size=parse_size_name(snakemake.wildcards.size), classes=snakemake.params.classes,
                               model=getattr(snakemake.params, "model", None))
