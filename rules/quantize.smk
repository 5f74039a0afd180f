rule quantize:
    """One cell of the grid: INT8 IR from the FP32 IR, a calibration set and a method entry."""
    input:
        xml="results/models/{model}/fp32.xml",
        bin="results/models/{model}/fp32.bin",
        calibration=lambda w: study.calibration_set(w.calib, w.model),
    output:
        xml="results/quantized/{model}/{calib}/{method}/int8.xml",
        bin="results/quantized/{model}/{calib}/{method}/int8.bin",
        info="results/quantized/{model}/{calib}/{method}/quantize.json",
    params:
        method=lambda w: config["methods"][w.method],
        precision_hint=config.get("evaluation", {}).get("precision_hint", "f32"),
    conda:
        "../envs/synthcal.yaml"
    log:
        "results/logs/quantize/{model}/{calib}/{method}.log",
    benchmark:
        "results/benchmarks/quantize/{model}/{calib}/{method}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
    script:
        "../workflow_scripts/quantize.py"


rule evaluate_int8:
    """INT8 test-set accuracy beside the FP32 reference (same evaluator, same precision hint)."""
    input:
        xml="results/quantized/{model}/{calib}/{method}/int8.xml",
        bin="results/quantized/{model}/{calib}/{method}/int8.bin",
        quantize_info="results/quantized/{model}/{calib}/{method}/quantize.json",
        test="results/data/test.npz",
        fp32_metrics="results/eval/{model}/fp32/metrics.json",
        fp32_predictions="results/eval/{model}/fp32/predictions.npz",
    output:
        metrics="results/eval/{model}/{calib}/{method}/metrics.json",
        predictions="results/eval/{model}/{calib}/{method}/predictions.npz",
        timing="results/eval/{model}/{calib}/{method}/timing.json",
    params:
        evaluation=study.evaluation_options(),
    conda:
        "../envs/synthcal.yaml"
    log:
        "results/logs/eval/{model}/{calib}/{method}.log",
    benchmark:
        "results/benchmarks/eval/{model}/{calib}/{method}.tsv"
    threads: 1
    script:
        "../workflow_scripts/evaluate.py"
