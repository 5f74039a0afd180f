# The 2022 toolchain in its side environment (synthcal/sideenv.py): methods with `engine: pot` and fractal sets
# with `backend: datumaro`. Their rules take over from the main ones for exactly those entries (wildcard
# constraints + ruleorder) and write the same files, so evaluation and the report need nothing else. The side
# environment is built only when one of these jobs is in the DAG (rule side_env = `make pot-env`), or by conda
# under `--sdm conda` (envs/pot.yaml).
from snakemake_interface_executor_plugins.settings import DeploymentMethod

SIDE_ENV_BY_CONDA = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method


localrules:
    side_env,  # pip needs the package index: on a cluster, build on the submitting host, not a compute node


ruleorder: quantize_pot > quantize
ruleorder: calibration_set_datumaro > calibration_set


rule side_env:
    """The side environment's venv from requirements-pot.lock (make pot-env), built on first need."""
    input:
        study.side_env_build()["lock"],
    output:
        study.side_env_build()["marker"],
    params:
        build=study.side_env_build(),
    conda:
        "../envs/synthcal.yaml"
    log:
        "results/logs/side_env.log",
    shell:
        "make -C {params.build[repo]:q} pot-env POT_VENV={params.build[env_dir]:q} > {log:q} 2>&1"


rule quantize_pot:
    """A cell whose method runs on POT (engine: pot) in the side environment; same outputs as rule quantize."""
    input:
        xml="results/models/{model}/fp32.xml",
        bin="results/models/{model}/fp32.bin",
        calibration=lambda w: study.calibration_set(w.calib, w.model),
        side_env=study.side_env_files(SIDE_ENV_BY_CONDA),
    output:
        xml="results/quantized/{model}/{calib}/{method}/int8.xml",
        bin="results/quantized/{model}/{calib}/{method}/int8.bin",
        info="results/quantized/{model}/{calib}/{method}/quantize.json",
    wildcard_constraints:
        method=study.wildcard_choice(study.methods_of_engine("pot")),
    params:
        method=lambda w: study.entry_json("methods", w.method),
        python=lambda w: study.side_python(SIDE_ENV_BY_CONDA),
        source=lambda w: study.side_env_build()["repo"],
        precision_hint=study.evaluation_options().get("precision_hint", "f32"),
    conda:
        "../envs/pot.yaml"
    log:
        "results/logs/quantize/{model}/{calib}/{method}.log",
    benchmark:
        "results/benchmarks/quantize/{model}/{calib}/{method}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
    shell:
        "PYTHONPATH={params.source:q} {params.python:q} -m synthcal.cluster.jobwatch synthcal.quantization.pot --fp32 {input.xml:q}"
        " --calibration {input.calibration:q} --name {wildcards.method:q} --method {params.method:q}"
        " --xml {output.xml:q} --info {output.info:q} --precision-hint {params.precision_hint:q} > {log:q} 2>&1"


rule calibration_set_datumaro:
    """A fractal set made by Datumaro's FractalImageGenerator (backend: datumaro) in the side environment."""
    input:
        side_env=study.side_env_files(SIDE_ENV_BY_CONDA),
    output:
        images="results/calib/{calib}/{size}/set.npz",
        preview="results/calib/{calib}/{size}/preview.png",
    wildcard_constraints:
        calib=study.wildcard_choice(study.datumaro_sets()),
    params:
        spec=lambda w: study.entry_json("calibration", w.calib),
        python=lambda w: study.side_python(SIDE_ENV_BY_CONDA),
        source=lambda w: study.side_env_build()["repo"],
    conda:
        "../envs/pot.yaml"
    log:
        "results/logs/calib/{calib}/{size}.log",
    benchmark:
        "results/benchmarks/calib/{calib}/{size}.tsv"
    threads: 2
    shell:
        "PYTHONPATH={params.source:q} {params.python:q} -m synthcal.cluster.jobwatch synthcal.calibration.datumaro_fractal write --name {wildcards.calib:q}"
        " --spec {params.spec:q} --size {wildcards.size:q} --set {output.images:q} --preview {output.preview:q}"
        " > {log:q} 2>&1"
