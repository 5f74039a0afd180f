rule report:
    """summary.csv, a self-contained index.html and plots; also registered for `snakemake --report`."""
    input:
        fp32=study.fp32_metrics(),
        exports=study.export_infos(),
        int8=study.int8_metrics(),
        quantize=study.quantize_infos(),
        quality=study.quality(),
        previews=study.previews(),
    output:
        summary=report(
            "results/report/summary.csv",
            caption="captions/summary.rst",
            category="Summary",
        ),
        html="results/report/index.html",
        heatmap=report(
            "results/report/delta_top1.png",
            caption="captions/heatmap.rst",
            category="Quantization",
        ),
        throughput=report(
            "results/report/throughput.png",
            caption="captions/throughput.rst",
            category="Quantization",
        ),
        quality=report(
            "results/report/quality_vs_delta.png",
            caption="captions/quality.rst",
            category="Calibration sets",
        ),
        previews=report(
            "results/report/calibration_previews.png",
            caption="captions/previews.rst",
            category="Calibration sets",
        ),
    params:
        study=lambda w: {
            "models": study.models,
            "calibrations": study.calibrations,
            "methods": study.methods,
        },
        config=config,
    conda:
        "../envs/synthcal.yaml"
    log:
        "results/logs/report.log",
    benchmark:
        "results/benchmarks/report.tsv"
    script:
        "../workflow_scripts/report.py"
