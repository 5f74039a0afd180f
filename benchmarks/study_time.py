"""Where a study run's time went: the run's wall time and a per-rule table from Snakemake's benchmark files.

    .venv/bin/python benchmarks/study_time.py                 # the newest run in .snakemake/log
    .venv/bin/python benchmarks/study_time.py --log .snakemake/log/<run>.snakemake.log

The run's log names each job's rule and its ``benchmark:`` file; the files hold the job's wall seconds
(``s``) and CPU seconds (``cpu_time``). Jobs that did not run in that run (already up to date) are not counted.
"""

from __future__ import annotations

import argparse
import re
from datetime import datetime
from pathlib import Path

import pandas as pd

RULE_LINE = re.compile(r"^(?:local)?rule (\w+):")
BENCHMARK_LINE = re.compile(r"^\s+benchmark: (\S+)")
TIMESTAMP_LINE = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]")


def parse_log(path: Path) -> tuple[dict[str, str], float | None]:
    """(benchmark file → rule, wall seconds from the first to the last timestamp) of one Snakemake log."""
    benchmarks: dict[str, str] = {}
    stamps: list[datetime] = []
    rule = None
    for line in path.read_text().splitlines():
        if match := TIMESTAMP_LINE.match(line):
            stamps.append(datetime.strptime(match.group(1), "%a %b %d %H:%M:%S %Y"))
        elif match := RULE_LINE.match(line):
            rule = match.group(1)
        elif (match := BENCHMARK_LINE.match(line)) and rule:
            benchmarks[match.group(1)] = rule
    wall = (stamps[-1] - stamps[0]).total_seconds() if len(stamps) > 1 else None
    return benchmarks, wall


def rule_table(benchmarks: dict[str, str], base: Path) -> pd.DataFrame:
    rows = []
    for path, rule in benchmarks.items():
        file = base / path
        if file.exists():
            record = pd.read_csv(file, sep="\t").iloc[-1]
            rows.append({"rule": rule, "wall_s": float(record["s"]), "cpu_s": float(record["cpu_time"])})
    jobs = pd.DataFrame(rows, columns=["rule", "wall_s", "cpu_s"])
    table = jobs.groupby("rule").agg(jobs=("wall_s", "size"), wall_s_total=("wall_s", "sum"),
                                     wall_s_median=("wall_s", "median"), wall_s_max=("wall_s", "max"),
                                     cpu_s_total=("cpu_s", "sum"))
    return table.sort_values("wall_s_total", ascending=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log", type=Path, help="a .snakemake/log/*.snakemake.log (default: the newest)")
    parser.add_argument("--directory", type=Path, default=Path("."), help="the workflow's working directory")
    args = parser.parse_args()
    log = args.log or max((args.directory / ".snakemake/log").glob("*.snakemake.log"), key=lambda p: p.stat().st_mtime)
    benchmarks, wall = parse_log(log)
    table = rule_table(benchmarks, args.directory)
    print(f"run: {log.name}")
    print(table.to_string(float_format=lambda value: f"{value:.1f}"))
    print(f"jobs: {int(table.jobs.sum())}, summed job wall time {table.wall_s_total.sum():.0f} s, "
          f"CPU time {table.cpu_s_total.sum():.0f} s")
    if wall is not None:
        print(f"study wall time: {wall:.0f} s = {wall / 60:.1f} min")


if __name__ == "__main__":
    main()
