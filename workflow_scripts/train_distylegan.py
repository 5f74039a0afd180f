from synthcal.cluster.jobwatch import guard_job

guard_job(snakemake)  # first: the job ends with its run, never beside an orphan of itself

from synthcal.gan.gan_train import train_from_files
from synthcal.workflow import job

with job(snakemake):
    train_from_files(snakemake.params.train, snakemake.input.real, snakemake.params.out_dir, snakemake.threads)
