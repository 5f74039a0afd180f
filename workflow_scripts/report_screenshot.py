from synthcal.cluster.jobwatch import guard_job

guard_job(snakemake)  # first: the job ends with its run, never beside an orphan of itself

from synthcal.report.browser import screenshot_report
from synthcal.workflow import job

with job(snakemake):
    screenshot_report(snakemake.input.html, snakemake.output.screenshot, snakemake.output.check,
                      sections_dir=snakemake.output.sections)
