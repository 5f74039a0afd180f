rule dataset_split:
    """One split of the study's dataset (CIFAR-10 download, local batches, or an ImageFolder tree) as the canonical image-set file."""
    input:
        sources=lambda w: study.data_inputs(w.split),
    output:
        "results/data/{split}.npz",
    params:
        data=config["data"],
    conda:
        "../envs/synthcal.yaml"
    log:
        "results/logs/data/{split}.log",
    benchmark:
        "results/benchmarks/data/{split}.tsv"
    resources:
        mem_mb=4000,
    script:
        "../workflow_scripts/dataset_split.py"
