from synthcal.weights import write_weights
from synthcal.workflow import job

with job(snakemake):
    write_weights(snakemake.wildcards.model, snakemake.params.spec, snakemake.params.cache_dir,
                  snakemake.output.weights, snakemake.output.info, seed=snakemake.params.seed)
