rule cifar10_split:
    """One CIFAR-10 split as the canonical image-set file."""
    output:
        "results/data/cifar10_{split}.npz",
    params:
        data=config["data"],
        cache_dir=config.get("cache_dir", "~/.cache/synthcal"),
    conda:
        "../envs/synthcal.yaml"
    log:
        "results/logs/data/cifar10_{split}.log",
    benchmark:
        "results/benchmarks/data/cifar10_{split}.tsv"
    resources:
        mem_mb=4000,
    script:
        "../workflow_scripts/cifar10_split.py"
