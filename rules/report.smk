rule report:
    """summary.csv (paired statistics vs FP32), recommendation.csv, plots and a self-contained index.html."""
    input:
        metrics=study.evaluation_files("metrics"),
        predictions=study.evaluation_files("predictions"),
        exports=study.export_infos(),
        quantize=study.quantize_infos(),
        quality=study.quality(),
        previews=study.previews(),
        timing=study.timing_files(),
        auto_oracle=study.auto_oracle_csv(),
    output:
        summary=report(
            "results/report/summary.csv",
            caption="captions/summary.rst",
            category="Summary",
        ),
        recommendation=report(
            "results/report/recommendation.csv",
            caption="captions/recommendation.rst",
            category="Summary",
        ),
        comparison="results/report/calibration_comparison.csv",
        study_table=report(
            "results/report/study_table.csv",
            caption="captions/study_table.rst",
            category="Summary",
        ),
        html="results/report/index.html",
        speed_accuracy=report(
            "results/report/speed_accuracy.png",
            caption="captions/speed_accuracy.rst",
            category="Quantization",
        ),
        intervals=report(
            "results/report/delta_top1_intervals.png",
            caption="captions/intervals.rst",
            category="Quantization",
        ),
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
        study=study.report_study(),
        config=config,
    conda:
        "../envs/synthcal.yaml"
    log:
        "results/logs/report.log",
    benchmark:
        "results/benchmarks/report.tsv"
    script:
        "../workflow_scripts/report.py"


rule report_screenshot:
    """The report opened in headless Chromium at 1280 px: first-screen PNG and one PNG per section
    (results/report/sections/{id}.png); fails on console errors, network requests or horizontal overflow.
    Needs Chromium; not part of `all`."""
    input:
        html="results/report/index.html",
    output:
        screenshot="results/report/screenshot.png",
        check="results/report/browser_check.json",
        sections=directory("results/report/sections"),
    conda:
        "../envs/synthcal.yaml"
    log:
        "results/logs/report_screenshot.log",
    benchmark:
        "results/benchmarks/report_screenshot.tsv"
    script:
        "../workflow_scripts/report_screenshot.py"
