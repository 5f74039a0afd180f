rule calibration_set:
    """A model-independent calibration set (cifar10, folder, fractal, gan, noise) at one input size, and its preview."""
    input:
        train=lambda w: study.training_split_for(w.calib),
        sources=lambda w: study.calibration_inputs(w.calib),
    output:
        images="results/calib/{calib}/{size}/set.npz",
        preview="results/calib/{calib}/{size}/preview.png",
    params:
        spec=lambda w: config["calibration"][w.calib],
        classes=study.classes,
    conda:
        "../envs/synthcal.yaml"
    log:
        "results/logs/calib/{calib}/{size}.log",
    benchmark:
        "results/benchmarks/calib/{calib}/{size}.tsv"
    threads: 1
    script:
        "../workflow_scripts/calibration_set.py"


rule calibration_set_for_model:
    """A calibration set derived from one classifier (datafree: BatchNorm-statistics inversion)."""
    input:
        network=lambda w: study.network_files(w.model),
    output:
        images="results/calib/{calib}/{size}/{model}/set.npz",
        preview="results/calib/{calib}/{size}/{model}/preview.png",
    params:
        spec=lambda w: config["calibration"][w.calib],
        classes=study.classes,
        model=lambda w: study.model_entry(w.model),
    conda:
        "../envs/synthcal.yaml"
    log:
        "results/logs/calib/{calib}/{size}/{model}.log",
    benchmark:
        "results/benchmarks/calib/{calib}/{size}/{model}.tsv"
    # one torch thread: the set's bytes do not depend on --cores, and two sets (or a set beside other jobs) fill
    # two cores better than one set on two threads (1.3 cores busy). First in line: the auto cells wait on them.
    threads: 1
    priority: 10
    script:
        "../workflow_scripts/calibration_set.py"


rule reference_features:
    """The FP32 model's features of the training pool, the reference of every set's Fréchet distance."""
    input:
        xml="results/models/{model}/fp32.xml",
        bin="results/models/{model}/fp32.bin",
        train=study.reference_split(),
    output:
        "results/quality/{model}/reference_features.npz",
    conda:
        "../envs/synthcal.yaml"
    log:
        "results/logs/quality/{model}/reference_features.log",
    benchmark:
        "results/benchmarks/quality/{model}/reference_features.tsv"
    threads: 1
    script:
        "../workflow_scripts/reference_features.py"


rule calibration_quality:
    """How close a calibration set is to the training data in the FP32 model's eyes."""
    input:
        calibration=lambda w: study.calibration_set(w.calib, w.model),
        xml="results/models/{model}/fp32.xml",
        bin="results/models/{model}/fp32.bin",
        reference="results/quality/{model}/reference_features.npz",
    output:
        "results/quality/{model}/{calib}.json",
    conda:
        "../envs/synthcal.yaml"
    log:
        "results/logs/quality/{model}/{calib}.log",
    benchmark:
        "results/benchmarks/quality/{model}/{calib}.tsv"
    threads: 1
    script:
        "../workflow_scripts/calibration_quality.py"
