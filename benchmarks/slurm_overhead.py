"""Per-job overhead of SLURM submission: submit → Snakemake notices the job finished, for short jobs.

Runs the README's SLURM command (`snakemake --profile profiles/slurm`) on N tiny noise calibration sets (about a
second of work each) with --jobs 1, so each job has the cluster to itself, and stamps Snakemake's output lines
as they arrive. Needs a SLURM cluster (.ci/slurm-single-node.sh up) and requirements-slurm.txt.

    .venv/bin/python benchmarks/slurm_overhead.py [--jobs 8]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import yaml
from snakemake.utils import update_config, validate

from synthcal.workflow import Study

REPO = Path(__file__).resolve().parents[1]
SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+)")
FINISHED = re.compile(r"Finished jobid: (\d+) ")


def _targets(overrides: dict) -> list[str]:
    """The noise sets' paths, as the Snakefile's Study names them."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    update_config(config, overrides)
    validate(config, str(REPO / "schemas/config.schema.yaml"))
    return [Study(config).calibration_set(name, "resnet20") for name in overrides["calibration"]]


def _jobcomp() -> dict[str, dict]:
    shown = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True).stdout
    location = re.search(r"^JobCompLoc\s+= (\S+)", shown, re.M)
    if "jobcomp/filetxt" not in shown or not location or not os.path.exists(location.group(1)):
        return {}
    records = (dict(re.findall(r"(\w+)=(\S*)", line)) for line in Path(location.group(1)).read_text().splitlines())
    return {record["JobId"]: record for record in records}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=8, help="number of short jobs")
    args = parser.parse_args()
    names = [f"noise{i}" for i in range(args.jobs)]
    overrides = {"study": {"models": ["resnet20"], "calibration": [names[0]], "methods": ["default"]},
                 "models": {"resnet20": {"weights": {"source": "random"}}},
                 "calibration": {name: {"kind": "noise", "count": 16, "seed": i} for i, name in enumerate(names)}}
    with tempfile.TemporaryDirectory(prefix="slurm-overhead-") as workdir:
        config = Path(workdir) / "overhead.yaml"
        config.write_text(yaml.safe_dump(overrides))
        command = [sys.executable, "-m", "snakemake", "--profile", "profiles/slurm", "-d", workdir, "--jobs", "1",
                   *_targets(overrides), "--configfile", str(REPO / "config.yaml"), str(config)]
        submitted_at, finished_at, slurm_ids, lines = {}, {}, {}, []
        process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
        for line in process.stdout:
            now = time.time()
            lines.append(line)
            if match := SUBMITTED.search(line):
                submitted_at[match.group(1)], slurm_ids[match.group(1)] = now, match.group(2)
            elif match := FINISHED.search(line):
                finished_at[match.group(1)] = now
        if process.wait() != 0 or len(finished_at) != args.jobs:
            sys.exit("the run failed:\n" + "".join(lines[-40:]))
        compute = [float(tsv.read_text().split("\n")[1].split("\t")[0])  # the rule's own seconds (benchmark:)
                   for tsv in Path(workdir).glob("results/benchmarks/calib/**/*.tsv")]
    records = _jobcomp()
    latencies, in_job, noticed = [], [], []
    print(f"{'SLURM job':>9}  {'submit→noticed':>14}  {'queued':>6}  {'in job':>6}  {'end→noticed':>11}")
    for job in sorted(submitted_at, key=int):
        latency = finished_at[job] - submitted_at[job]
        latencies.append(latency)
        record = records.get(slurm_ids[job])
        if record:
            start, end = (datetime.fromisoformat(record[key]).timestamp() for key in ("StartTime", "EndTime"))
            queued, running, late = start - submitted_at[job], end - start, finished_at[job] - end
            in_job.append(running)
            noticed.append(late)
            print(f"{slurm_ids[job]:>9}  {latency:13.1f}s  {queued:5.0f}s  {running:5.0f}s  {late:10.0f}s")
        else:
            print(f"{slurm_ids[job]:>9}  {latency:13.1f}s")
    within = sum(latency <= 15 for latency in latencies)
    print(f"\nsubmit → noticed finished, per short job: median {statistics.median(latencies):.1f} s "
          f"(min {min(latencies):.1f}, max {max(latencies):.1f}; {within} of {len(latencies)} within 15 s), "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if in_job and compute:
        print(f"  of which inside the SLURM job (two Snakemake starts, srun, the rule's work): median "
              f"{statistics.median(in_job):.0f} s (1 s resolution); the rule's own work: median "
              f"{statistics.median(compute):.1f} s; job end → noticed: median {statistics.median(noticed):.0f} s")


if __name__ == "__main__":
    main()
