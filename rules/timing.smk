rule time_model:
    """The report's speed: a model's FP32 IR and the INT8 IR of each of its cells, timed interleaved (median of
    `timing.repeats`, with the spread), alone on the machine: threads = every core Snakemake may use, so no other
    job runs beside it (on SLURM: a node of its own, profiles/slurm)."""
    input:
        irs=lambda w: study.timing_inputs(w.model),
        test="results/data/test.npz",
    output:
        "results/timing/{model}.json",
    params:
        irs=lambda w: study.timed_irs(w.model),
        timing=study.timing_options(),
    conda:
        "../envs/synthcal.yaml"
    log:
        "results/logs/timing/{model}.log",
    benchmark:
        "results/benchmarks/timing/{model}.tsv"
    threads: workflow.cores
    script:
        "../workflow_scripts/time_model.py"
