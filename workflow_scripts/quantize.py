from synthcal.cluster.jobwatch import guard_job

guard_job(snakemake)  # first: the job ends with its run, never beside an orphan of itself

from synthcal.quantization.nncf_engine import quantize_from_files
from synthcal.workflow import job

with job(snakemake):
    quantize_from_files(snakemake.wildcards.method, snakemake.params.method, snakemake.input, snakemake.output,
                        precision_hint=snakemake.params.precision_hint)
