# Extra test sets (`evaluation.sets`): the same FP32 and INT8 evaluations on more images.
# The study's own test split keeps its paths (rules evaluate_fp32, evaluate_int8); extra sets go under .../sets/.


wildcard_constraints:
    test_set=NAME_PATTERN,


rule evaluation_set:
    """An extra labelled test set from `evaluation.sets` (e.g. the 10k lossy JPEG test images) as one image-set file."""
    input:
        sources=lambda w: study.evaluation_set_inputs(w.test_set),
    output:
        "results/data/eval/{test_set}.npz",
    params:
        spec=lambda w: study.evaluation_set_spec(w.test_set),
    conda:
        "../envs/synthcal.yaml"
    log:
        "results/logs/data/eval/{test_set}.log",
    benchmark:
        "results/benchmarks/data/eval/{test_set}.tsv"
    resources:
        mem_mb=4000,
    script:
        "../workflow_scripts/evaluation_set.py"


rule evaluate_fp32_on_set:
    """FP32 accuracy and throughput on an extra test set."""
    input:
        xml="results/models/{model}/fp32.xml",
        bin="results/models/{model}/fp32.bin",
        export_info="results/models/{model}/export.json",
        test="results/data/eval/{test_set}.npz",
    output:
        metrics="results/eval/{model}/fp32/sets/{test_set}/metrics.json",
        predictions="results/eval/{model}/fp32/sets/{test_set}/predictions.npz",
        timing="results/eval/{model}/fp32/sets/{test_set}/timing.json",
    params:
        evaluation=study.evaluation_options(),
    conda:
        "../envs/synthcal.yaml"
    log:
        "results/logs/eval/{model}/fp32/sets/{test_set}.log",
    benchmark:
        "results/benchmarks/eval/{model}/fp32/sets/{test_set}.tsv"
    threads: 1
    script:
        "../workflow_scripts/evaluate.py"


rule evaluate_int8_on_set:
    """One cell's INT8 accuracy on an extra test set beside the FP32 reference on the same images."""
    input:
        xml="results/quantized/{model}/{calib}/{method}/int8.xml",
        bin="results/quantized/{model}/{calib}/{method}/int8.bin",
        quantize_info="results/quantized/{model}/{calib}/{method}/quantize.json",
        test="results/data/eval/{test_set}.npz",
        fp32_metrics="results/eval/{model}/fp32/sets/{test_set}/metrics.json",
        fp32_predictions="results/eval/{model}/fp32/sets/{test_set}/predictions.npz",
    output:
        metrics="results/eval/{model}/{calib}/{method}/sets/{test_set}/metrics.json",
        predictions="results/eval/{model}/{calib}/{method}/sets/{test_set}/predictions.npz",
        timing="results/eval/{model}/{calib}/{method}/sets/{test_set}/timing.json",
    params:
        evaluation=study.evaluation_options(),
    conda:
        "../envs/synthcal.yaml"
    log:
        "results/logs/eval/{model}/{calib}/{method}/sets/{test_set}.log",
    benchmark:
        "results/benchmarks/eval/{model}/{calib}/{method}/sets/{test_set}.tsv"
    threads: 1
    script:
        "../workflow_scripts/evaluate.py"
