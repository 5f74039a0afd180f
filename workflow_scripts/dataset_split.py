from synthcal.cluster.jobwatch import guard_job

guard_job(snakemake)  # first: the job ends with its run, never beside an orphan of itself

from synthcal.data import load_split
from synthcal.io import save_image_set
from synthcal.workflow import job

with job(snakemake):
    split = load_split(snakemake.params.data, snakemake.wildcards.split, snakemake.config["cache_dir"])
    save_image_set(snakemake.output[0], split.images, split.labels, split.provenance)
