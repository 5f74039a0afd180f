rule fetch_weights:
    """Verified classifier weights (release URL with hash check, local path, or random)."""
    output:
        weights="results/weights/{model}.pt",
        info="results/weights/{model}.json",
    params:
        spec=lambda w: (config["models"][w.model] or {}).get("weights", {"source": "url"}),
        cache_dir=config.get("cache_dir", "~/.cache/synthcal"),
        seed=config.get("seed", 0),
    conda:
        "../envs/synthcal.yaml"
    log:
        "results/logs/weights/{model}.log",
    benchmark:
        "results/benchmarks/weights/{model}.tsv"
    script:
        "../workflow_scripts/fetch_weights.py"


rule export_model:
    """PyTorch → ONNX → OpenVINO IR, gated by a PyTorch/OpenVINO parity check."""
    input:
        weights="results/weights/{model}.pt",
        weights_info="results/weights/{model}.json",
        test="results/data/test.npz",
    output:
        onnx="results/models/{model}/fp32.onnx",
        xml="results/models/{model}/fp32.xml",
        bin="results/models/{model}/fp32.bin",
        info="results/models/{model}/export.json",
    params:
        export=config.get("export", {}),
    conda:
        "../envs/synthcal.yaml"
    log:
        "results/logs/export/{model}.log",
    benchmark:
        "results/benchmarks/export/{model}.tsv"
    threads: 2
    script:
        "../workflow_scripts/export_model.py"


rule evaluate_fp32:
    """FP32 test-set accuracy and throughput of the exported IR."""
    input:
        xml="results/models/{model}/fp32.xml",
        bin="results/models/{model}/fp32.bin",
        export_info="results/models/{model}/export.json",
        test="results/data/test.npz",
    output:
        metrics="results/eval/{model}/fp32/metrics.json",
        predictions="results/eval/{model}/fp32/predictions.npz",
    params:
        evaluation=config.get("evaluation", {}),
    conda:
        "../envs/synthcal.yaml"
    log:
        "results/logs/eval/{model}/fp32.log",
    benchmark:
        "results/benchmarks/eval/{model}/fp32.tsv"
    threads: 2
    script:
        "../workflow_scripts/evaluate.py"
