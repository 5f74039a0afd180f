# synthcal: INT8 quantization of CIFAR-10 classifiers with OpenVINO/NNCF,
# calibrated on real, synthetic (GAN, fractal), data-free or noise images.
from snakemake.utils import min_version, validate

from synthcal.workflow import Study

min_version("9.0")


configfile: "config.yaml"


validate(config, "schemas/config.schema.yaml")
study = Study(config)


wildcard_constraints:
    model="[^/]+",
    calib="[^/]+",
    method="[^/]+",
    split="train|test",


include: "rules/data.smk"
include: "rules/models.smk"
include: "rules/calibration.smk"
include: "rules/quantize.smk"
include: "rules/report.smk"
include: "rules/gan.smk"


rule all:
    default_target: True
    input:
        study.fp32_metrics(),
        study.int8_metrics(),
        study.quality(),
        study.report(),
