# Method `auto` (synthcal/quantization/auto.py): candidate recipes scored on held-out synthetic images, the best
# one kept as the cell's int8.xml; then, apart, every candidate on the real test sets (the oracle) for the report.


ruleorder: quantize_auto > quantize


rule quantize_auto:
    """An auto cell: every candidate quantized and scored by the proxy on the holdout set (held-out synthetic images,
    or the method's real_holdout where the cell is calibrated on real images); the choice is fixed in quantize.json
    here, with no test image among the inputs."""
    input:
        xml="results/models/{model}/fp32.xml",
        bin="results/models/{model}/fp32.bin",
        calibration=study.auto_calibration_set,
        holdout=study.holdout_set,
    output:
        xml="results/quantized/{model}/{calib}/{method}/int8.xml",
        bin="results/quantized/{model}/{calib}/{method}/int8.bin",
        info="results/quantized/{model}/{calib}/{method}/quantize.json",
        candidates=directory("results/quantized/{model}/{calib}/{method}/candidates"),
    wildcard_constraints:
        method=study.auto_method_pattern(),
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
    priority: 10
    resources:
        mem_mb=4000,
    script:
        "../workflow_scripts/quantize_auto.py"


rule evaluate_auto_candidates:
    """The oracle: every candidate of an auto cell on one real test set (predictions per candidate)."""
    input:
        unpack(study.auto_candidates_eval),
    output:
        predictions="results/eval/{model}/{calib}/{method}/candidates/{test_set}.npz",
    wildcard_constraints:
        method=study.auto_method_pattern(),
    params:
        evaluation=study.evaluation_options(),
    conda:
        "../envs/synthcal.yaml"
    log:
        "results/logs/eval/{model}/{calib}/{method}/candidates/{test_set}.log",
    benchmark:
        "results/benchmarks/eval/{model}/{calib}/{method}/candidates/{test_set}.tsv"
    threads: 1
    script:
        "../workflow_scripts/evaluate_auto_candidates.py"


rule auto_vs_oracle:
    """auto_vs_oracle.csv: per auto cell and test set, the pick against the best candidate on real images."""
    input:
        study.auto_oracle_files(),
    output:
        csv="results/report/auto_vs_oracle.csv",
    params:
        records=study.auto_oracle_records(),
        report=config.get("report") or {},
        seed=config.get("seed", 0),
    conda:
        "../envs/synthcal.yaml"
    log:
        "results/logs/auto_vs_oracle.log",
    benchmark:
        "results/benchmarks/auto_vs_oracle.tsv"
    script:
        "../workflow_scripts/auto_vs_oracle.py"
