from synthcal.quantization.auto import quantize_auto_from_files
from synthcal.workflow import job

with job(snakemake):
    quantize_auto_from_files(snakemake.wildcards.method, snakemake.params.method, snakemake.input, snakemake.output,
                             precision_hint=snakemake.params.precision_hint)
