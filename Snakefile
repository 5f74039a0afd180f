# synthcal: INT8 quantization of image classifiers (the CIFAR-10 zoo or your own) with OpenVINO/NNCF,
# calibrated on real, synthetic (GAN, fractal), data-free or noise images.
from snakemake.utils import min_version

from synthcal.cluster.runguard import guard_run
from synthcal.configfiles import check_config_files
from synthcal.models import allow_user_code
from synthcal.workflow import (
    NAME_PATTERN,
    Study,
    default_configfile,
    runs_no_job,
    runs_one_submitted_job,
    validate_config,
)

min_version("9.0")


base_config = default_configfile(workflow.basedir)  # the working directory's, else the checkout's
check_config_files([base_config, *workflow.overwrite_configfiles])  # duplicate keys, alias bombs, YTE: refused


configfile: base_config


validate_config(config, f"{workflow.basedir}/schemas/config.schema.yaml")  # names first, then the schema
allow_user_code(not runs_no_job())  # --unlock, --lint: no model factory imported
study = Study(config)
if not runs_no_job() and not runs_one_submitted_job():
    study.update_manifests()  # user data listed before the DAG: its errors stop the run


onstart:
    # one executing run per directory; no rerun over live SLURM jobs (synthcal/cluster/runguard.py, README)
    guard_run(workflow)


wildcard_constraints:
    model=NAME_PATTERN,  # the name rule every entry follows (synthcal.workflow.check_names)
    calib=NAME_PATTERN,
    method=NAME_PATTERN,
    split="train|test",
    size="[0-9]+x[0-9]+",


include: "rules/data.smk"
include: "rules/models.smk"
include: "rules/calibration.smk"
include: "rules/quantize.smk"
include: "rules/auto.smk"
include: "rules/sideenv.smk"
include: "rules/evaluation.smk"
include: "rules/timing.smk"
include: "rules/report.smk"
include: "rules/gan.smk"


rule all:
    default_target: True
    input:
        study.evaluation_files("metrics"),
        study.quality(),
        study.timing_files(),
        study.report(),
