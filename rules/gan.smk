rule gan_real_data:
    """The labelled images a generator is trained on (adversarial mode)."""
    input:
        train=lambda w: (
            []
            if config["gan_training"][w.gan].get("data_folder")
            else "results/data/train.npz"
        ),
        sources=lambda w: study.gan_data_inputs(w.gan),
    output:
        "results/gan/{gan}/real.npz",
    params:
        data_folder=lambda w: config["gan_training"][w.gan].get("data_folder"),
    conda:
        "../envs/synthcal.yaml"
    log:
        "results/logs/gan/{gan}/real_data.log",
    benchmark:
        "results/benchmarks/gan/{gan}/real_data.tsv"
    script:
        "../workflow_scripts/gan_real_data.py"


rule train_distylegan:
    """Train a DiStyleGAN generator (adversarial or distill); resumes from results/gan/{gan}/checkpoint.pt."""
    input:
        real="results/gan/{gan}/real.npz",
    output:
        generator="results/gan/{gan}/generator.pt",
        config="results/gan/{gan}/config.json",
        log_csv="results/gan/{gan}/train_log.csv",
    params:
        train=lambda w: config["gan_training"][w.gan].get("train", {}),
        out_dir=lambda w: f"results/gan/{w.gan}",
    conda:
        "../envs/synthcal.yaml"
    log:
        "results/logs/gan/{gan}/train.log",
    benchmark:
        "results/benchmarks/gan/{gan}/train.tsv"
    threads: 4
    resources:
        mem_mb=8000,
        gpu=lambda w: config["gan_training"][w.gan].get("gpus", 0),
    script:
        "../workflow_scripts/train_distylegan.py"


rule gan_quality:
    """Class consistency and Fréchet distance of a generator, judged by a classifier that took no part in training."""
    input:
        generator="results/gan/{gan}/generator.pt",
        config="results/gan/{gan}/config.json",
        xml=lambda w: study.judge_ir(w.gan),
        train="results/data/train.npz",
    output:
        "results/gan/{gan}/quality.json",
    params:
        judge=lambda w: study.gan_judge(w.gan),
        per_class=lambda w: config["gan_training"][w.gan].get("quality_per_class", 100),
    conda:
        "../envs/synthcal.yaml"
    log:
        "results/logs/gan/{gan}/quality.log",
    benchmark:
        "results/benchmarks/gan/{gan}/quality.tsv"
    threads: 2
    script:
        "../workflow_scripts/gan_quality.py"
