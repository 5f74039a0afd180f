from synthcal.quantization.nncf_engine import quantize_from_files
from synthcal.workflow import job

with job(snakemake):
    quantize_from_files(snakemake.wildcards.method, snakemake.params.method, snakemake.input, snakemake.output,
                        precision_hint=snakemake.params.precision_hint)
