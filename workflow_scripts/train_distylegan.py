from synthcal.gan.gan_train import train_from_files
from synthcal.workflow import job

with job(snakemake):
    train_from_files(snakemake.params.train, snakemake.input.real, snakemake.params.out_dir, snakemake.threads)
