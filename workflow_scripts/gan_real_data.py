from synthcal.cluster.jobwatch import guard_job

guard_job(snakemake)  # first: the job ends with its run, never beside an orphan of itself

from synthcal.gan.gan_train import write_real_data
from synthcal.workflow import job

with job(snakemake):
    write_real_data(snakemake.params.data_folder, snakemake.input.train or None, snakemake.output[0])
