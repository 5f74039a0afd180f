rule calibration_set:
    """A model-independent calibration set (cifar10, folder, fractal, gan, noise) and its preview."""
    input:
        train=lambda w: study.training_split_for(w.calib),
        generator=lambda w: study.generator_files(w.calib),
    output:
        images="results/calib/{calib}/set.npz",
        preview="results/calib/{calib}/preview.png",
    params:
        spec=lambda w: config["calibration"][w.calib],
    conda:
        "../envs/synthcal.yaml"
    log:
        "results/logs/calib/{calib}.log",
    benchmark:
        "results/benchmarks/calib/{calib}.tsv"
    threads: 2
    script:
        "../workflow_scripts/calibration_set.py"


rule calibration_set_for_model:
    """A calibration set derived from one classifier (datafree: BatchNorm-statistics inversion)."""
    input:
        weights="results/weights/{model}.pt",
    output:
        images="results/calib/{calib}/{model}/set.npz",
        preview="results/calib/{calib}/{model}/preview.png",
    params:
        spec=lambda w: config["calibration"][w.calib],
        deploy_repvgg=config.get("export", {}).get("deploy_repvgg", True),
    conda:
        "../envs/synthcal.yaml"
    log:
        "results/logs/calib/{calib}/{model}.log",
    benchmark:
        "results/benchmarks/calib/{calib}/{model}.tsv"
    threads: 2
    script:
        "../workflow_scripts/calibration_set.py"


rule calibration_quality:
    """How close a calibration set is to CIFAR-10 in the classifier's eyes."""
    input:
        calibration=lambda w: study.calibration_set(w.calib, w.model),
        weights="results/weights/{model}.pt",
        train="results/data/train.npz",
    output:
        "results/quality/{model}/{calib}.json",
    conda:
        "../envs/synthcal.yaml"
    log:
        "results/logs/quality/{model}/{calib}.log",
    benchmark:
        "results/benchmarks/quality/{model}/{calib}.tsv"
    threads: 2
    script:
        "../workflow_scripts/calibration_quality.py"
