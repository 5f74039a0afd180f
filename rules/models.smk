rule fetch_weights:
    """A model's network file, verified: zoo/torch → a plain state_dict (.pt), onnx → the ONNX file."""
    input:
        local=lambda w: study.model_local_files(w.model),
    output:
        network="results/weights/{model}.{suffix}",
        info="results/weights/{model}.{suffix}.json",
    params:
        model=lambda w: study.model_entry(w.model),
        seed=config.get("seed", 0),
    wildcard_constraints:
        suffix="pt|onnx",
    conda:
        "../envs/synthcal.yaml"
    log:
        "results/logs/weights/{model}.{suffix}.log",
    benchmark:
        "results/benchmarks/weights/{model}.{suffix}.tsv"
    script:
        "../workflow_scripts/fetch_weights.py"


rule export_model:
    """Any model kind → FP32 OpenVINO IR with raw-pixel preprocessing baked in, gated by a parity check."""
    input:
        network=lambda w: study.network_files(w.model),
        network_info=lambda w: study.network_info(w.model),
        test="results/data/test.npz",
    output:
        xml="results/models/{model}/fp32.xml",
        bin="results/models/{model}/fp32.bin",
        info="results/models/{model}/export.json",
    params:
        model=lambda w: study.model_entry(w.model),
        export=config.get("export", {}),
    conda:
        "../envs/synthcal.yaml"
    log:
        "results/logs/export/{model}.log",
    benchmark:
        "results/benchmarks/export/{model}.tsv"
    # one core: a two-core job waits until both are free at once, and every cell of its model waits on it (the
    # offline study's resnet56 cells started 13 min in); the IR bytes are the same on one thread as on two
    threads: 1
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
        timing="results/eval/{model}/fp32/timing.json",
    params:
        evaluation=study.evaluation_options(),
    conda:
        "../envs/synthcal.yaml"
    log:
        "results/logs/eval/{model}/fp32.log",
    benchmark:
        "results/benchmarks/eval/{model}/fp32.tsv"
    threads: 1
    script:
        "../workflow_scripts/evaluate.py"
