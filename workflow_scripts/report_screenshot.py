from synthcal.report.browser import screenshot_report
from synthcal.workflow import job

with job(snakemake):
    screenshot_report(snakemake.input.html, snakemake.output.screenshot, snakemake.output.check,
                      sections_dir=snakemake.output.sections)
