from synthcal.cluster.jobwatch import guard_job

guard_job(snakemake)  # first: the job ends with its run, never beside an orphan of itself

from synthcal.evaluation.evaluation_sets import load_evaluation_set
from synthcal.io import save_image_set
from synthcal.workflow import job

with job(snakemake):
    test_set = load_evaluation_set(snakemake.wildcards.test_set, snakemake.params.spec, snakemake.config["cache_dir"])
    save_image_set(snakemake.output[0], test_set.images, test_set.labels, test_set.provenance)
