"""The README's SLURM command on a real SLURM cluster (.ci/slurm-single-node.sh brings one up on Debian).

One small slice of the DAG (resnet20, two small calibration sets, 300 test images) goes through: a run hard-killed
mid-run while two others are refused by the run guard; a rerun refused until the killed run's orphaned SLURM jobs
are cancelled as the README says; Ctrl-C mid-run; SIGTERM mid-run (with SBATCH_PARTITION/SBATCH_ACCOUNT set); a
rerun that completes; a run with nothing to do. Every job that finished must have been a SLURM job of its run, as
slurmctld's completion log (jobcomp/filetxt, no accounting database needed) records it.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO, shared_path

REQUIRE = os.environ.get("SYNTHCAL_REQUIRE_SLURM") == "1"  # .ci/run: a missing cluster fails instead of skipping
SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+)")
FINISHED = re.compile(r"Finished jobid: (\d+) \(Rule: (\w+)\)")
SUBMITTED_RULE = re.compile(r"has been submitted with SLURM jobid (\d+) \(log: \S*/rule_(\w+)/")  # SLURM id, rule
SUBMITTED_IDS = re.compile(r"Job (\d+) has been submitted with SLURM jobid \d+")
ANNOUNCED = re.compile(r"^    jobid: (\d+)$", re.M)  # Snakemake's job block, printed when the job is scheduled
# .ci/slurm-single-node.sh makes a second, non-default partition; there is no accounting, so any account goes
STEERED = {"SBATCH_PARTITION": "second", "SBATCH_ACCOUNT": "synthcal-test"}
LIVE = {"PENDING", "RUNNING", "SUSPENDED", "COMPLETING", "CONFIGURING", "REQUEUED", "RESIZING", "STOPPED"}


def _unavailable(reason: str):
    if REQUIRE:
        pytest.fail(f"SYNTHCAL_REQUIRE_SLURM=1 but {reason}")
    pytest.skip(reason)


def readme_command() -> list[str]:
    """The submit command of the README's SLURM section, as a user types it."""
    section = README.split("## Running on a cluster (SLURM)", 1)[1].split("\n## ", 1)[0]
    lines = [line.split("#", 1)[0].strip() for line in section.splitlines()]
    commands = [line for line in lines if line.startswith("snakemake --profile profiles/slurm")]
    assert commands, "the README's SLURM section shows no 'snakemake --profile profiles/slurm' command"
    return shlex.split(commands[0])


README = (REPO / "README.md").read_text()


def _plugin_installed() -> bool:
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return False
    return True


def test_slurm_profile_settings_reach_snakemake():
    """Snakemake also loads profiles/default (and it wins on shared keys): every slurm setting must survive."""
    if not _plugin_installed():
        _unavailable("the SLURM executor plugin is not installed: pip install -r requirements-slurm.txt")
    from snakemake.cli import parse_args

    here = os.getcwd()
    os.chdir(REPO)
    try:
        _, merged = parse_args(readme_command()[1:])
        _, alone = parse_args([*readme_command()[1:], "--workflow-profile", "none"])
    finally:
        os.chdir(here)
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    for key in profile:
        name = key.replace("-", "_")
        assert repr(getattr(merged, name)) == repr(getattr(alone, name)), f"profiles/default overrides {key}"
    assert merged.latency_wait == 60 and merged.executor == "slurm" and merged.slurm_status_command == "squeue"
    assert merged.slurm_init_seconds_before_status_checks <= 5
    assert "slurm_partition" in merged.default_resources and "slurm_account" in merged.default_resources


def test_partition_and_account_follow_sbatch_environment(monkeypatch):
    from synthcal.cluster import slurm

    monkeypatch.setenv("SBATCH_PARTITION", "gpu")
    monkeypatch.setenv("SBATCH_ACCOUNT", "proj42")
    slurm.account.cache_clear()
    assert (slurm.partition(), slurm.account()) == ("gpu", "proj42")
    monkeypatch.delenv("SBATCH_PARTITION")
    monkeypatch.delenv("SBATCH_ACCOUNT")
    slurm.account.cache_clear()
    assert slurm.partition() == ""  # the plugin then takes the cluster's default partition
    assert isinstance(slurm.account(), str)
    slurm.account.cache_clear()


@pytest.mark.parametrize("gpus", [None, 1])
def test_gan_training_asks_for_a_gpu_only_when_its_config_does(tmp_path, gpus):
    entry = {"data_folder": str(tmp_path)} | ({"gpus": gpus} if gpus else {})
    config = tmp_path / "gpu.yaml"
    config.write_text(yaml.safe_dump({"study": {"models": ["resnet20"], "calibration": ["noise"],
                                                "methods": ["default"]}, "gan_training": {"gpu_test": entry}}))
    target = "results/gan/gpu_test/generator.pt"
    dry = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-d", str(tmp_path), target,
                          "--configfile", str(REPO / "config.yaml"), str(config)],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert dry.returncode == 0, dry.stderr[-3000:]
    resources = re.search(r"rule train_distylegan:.*?resources: ([^\n]*)", dry.stdout, re.S).group(1)
    assert f"gpu={gpus or 0}," in resources  # the SLURM executor sends gpu=N as --gpus=N (none for 0)


# ------------------------------------------------------------------------------------------------ real cluster
def _cluster() -> dict:
    """slurmctld's settings, or skip (fail under SYNTHCAL_REQUIRE_SLURM=1) with the reason there is no cluster."""
    if not _plugin_installed():
        _unavailable("the SLURM executor plugin is not installed: pip install -r requirements-slurm.txt")
    if shutil.which("sinfo") is None:
        _unavailable("no SLURM here (sinfo not found); as root: .ci/slurm-single-node.sh install && "
                     ".ci/slurm-single-node.sh up")
    shown = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True)
    nodes = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True)
    if shown.returncode != 0 or not re.search(r"^(idle|mixed|allocated)", nodes.stdout, re.M):
        _unavailable(f"no SLURM controller or node answers ({(shown.stderr or nodes.stdout).strip()}); as root: "
                     ".ci/slurm-single-node.sh up")
    config = dict(re.findall(r"^(\w+)\s+= (.*)$", shown.stdout, re.M))
    if config.get("JobCompType") != "jobcomp/filetxt" or not os.access(config.get("JobCompLoc", ""), os.R_OK):
        _unavailable("the SLURM test reads finished jobs from JobCompType=jobcomp/filetxt (no sacct needed); "
                     "this cluster has " + config.get("JobCompType", "none") + " (.ci/slurm-single-node.sh sets it)")
    return config


def _completed_jobs(jobcomp: Path) -> dict[str, dict]:
    """slurmctld's completion records: job id → fields (JobState, Name, ExitCode, ...)."""
    records = {}
    for line in jobcomp.read_text().splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        records[fields["JobId"]] = fields
    return records


def _jobs(run_id: str) -> dict[str, str]:
    """SLURM job id → state of the run's jobs that are still queued or running."""
    listed = subprocess.run(["squeue", "--noheader", "--states=all", "--name", run_id, "--format=%i|%T"],
                            capture_output=True, text=True, check=True)
    states = dict(line.split("|") for line in listed.stdout.split())
    return {job: state for job, state in states.items() if state in LIVE}


def _live(run_id: str, settle: float = 0) -> list[str]:
    """The run's live job ids (sorted), waiting up to ``settle`` seconds for them to go."""
    deadline = time.monotonic() + settle
    while (jobs := _jobs(run_id)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return sorted(jobs, key=int)


def _freeze(run_id: str, timeout: float = 300) -> list[str]:
    """Suspend the run's running jobs and hold its pending ones, so they stay alive however short they are."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frozen = []
        for job, state in _jobs(run_id).items():
            action = "suspend" if state == "RUNNING" else "hold" if state == "PENDING" else None
            if action and subprocess.run(["scontrol", action, job], capture_output=True).returncode == 0:
                frozen.append(job)
        if frozen:
            return sorted(frozen, key=int)
        time.sleep(0.2)
    raise AssertionError(f"no job of {run_id} to freeze within {timeout}s")


class Run:
    """The README command in the background, its output in a file."""

    def __init__(self, workdir: Path, extra: list[str], name: str, env: dict | None = None):
        self.log = workdir / f"{name}.log"
        command = [sys.executable, "-m", *readme_command(), "-d", str(workdir), *extra]
        self.process = subprocess.Popen(command, cwd=REPO, stdout=self.log.open("w"), stderr=subprocess.STDOUT,
                                        env={**os.environ, **(env or {})},
                                        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    @property
    def text(self) -> str:
        return self.log.read_text()

    @property
    def run_id(self) -> str:
        return re.search(r"SLURM run ID: (\S+)", self.text).group(1)

    def submitted(self) -> dict[str, str]:
        """Snakemake job id → SLURM job id."""
        return dict(SUBMITTED.findall(self.text))

    def finished(self) -> list[tuple[str, str]]:
        return FINISHED.findall(self.text)

    def wait_until_mid_run(self, timeout: float = 900) -> None:
        """Until one job has finished and another is submitted and not yet finished."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the run ended before mid-run:\n{self.text[-4000:]}"
            finished = {job for job, _ in self.finished()}
            if finished and set(self.submitted()) - finished:
                return
            time.sleep(0.5)
        raise AssertionError(f"no mid-run point within {timeout}s:\n{self.text[-4000:]}")

    def wait(self, timeout: float = 1500) -> int:
        return self.process.wait(timeout=timeout)


@pytest.fixture(scope="module")
def slurm_runs(tmp_path_factory):
    cluster = _cluster()
    lossless = shared_path("data", "cifar10-lossless")
    weights = shared_path("weights", "cifar10_resnet20-4118986f.pt")
    workdir = tmp_path_factory.mktemp("slurm")
    config = {
        "study": {"models": ["resnet20"], "calibration": ["cifar10", "noise"], "methods": ["default"]},
        "data": {"source": "folder", "folders": {"train": str(lossless / "train"), "test": str(lossless / "test")},
                 "limit": {"test": 300}},
        "models": {"resnet20": {"weights": {"source": "path", "path": str(weights)}}},
        "calibration": {"cifar10": {"kind": "cifar10", "per_class": 10, "seed": 0},
                        "noise": {"kind": "noise", "count": 100, "seed": 0}},
        "gan_training": {"outside": {"data_folder": str(lossless / "train")}},
    }
    config_path = workdir / "slurm_config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    configs = ["--configfile", str(REPO / "config.yaml"), str(config_path)]
    runs: dict = {"workdir": workdir, "jobcomp": Path(cluster["JobCompLoc"])}
    started: list[Run] = []

    def start(name: str, *targets: str, env: dict | None = None) -> Run:
        run = Run(workdir, [*targets, *configs], name, env)
        started.append(run)
        return run

    try:
        # 1. A run, hard-killed mid-run: its SLURM job goes on. Meanwhile two other runs are refused.
        killed = runs["killed"] = start("killed")
        killed.wait_until_mid_run()
        # frozen at once: its jobs stay alive (and the run in progress) however long the next two runs take
        runs["orphans"] = _freeze(killed.run_id)
        outside = runs["outside"] = start("outside", "results/gan/outside/real.npz")  # shares no file with it
        runs["outside_rc"] = outside.wait(600)
        runs["locks_after_outside"] = sorted(os.listdir(workdir / ".snakemake" / "locks")) \
            if (workdir / ".snakemake" / "locks").exists() else []
        same = runs["same"] = start("same")  # the killed run's targets, while it still runs
        runs["same_rc"] = same.wait(600)
        killed.process.send_signal(signal.SIGKILL)
        killed.wait(60)
        runs["unlock"] = subprocess.run([sys.executable, "-m", *readme_command(), "-d", str(workdir), "--unlock",
                                         *configs], cwd=REPO, capture_output=True, text=True)
        blocked = runs["blocked"] = start("blocked")
        runs["blocked_rc"] = blocked.wait(600)
        subprocess.run(["scancel", "--name", killed.run_id], check=True)  # the README's orphan cleanup
        assert _live(killed.run_id, settle=60) == []

        # 2. A run interrupted (Ctrl-C) mid-run, one stopped with SIGTERM mid-run, a rerun that completes, and
        # one with nothing to do.
        interrupted = runs["interrupted"] = start("interrupted")
        interrupted.wait_until_mid_run()
        runs["active_at_sigint"] = _freeze(interrupted.run_id)  # certainly active when SIGINT arrives
        interrupted.process.send_signal(signal.SIGINT)
        runs["interrupted_rc"] = interrupted.wait(300)
        runs["alive_after_sigint"] = _live(interrupted.run_id, settle=30)
        terminated = runs["terminated"] = start("terminated", env=STEERED)  # also: the sbatch variables steer it
        terminated.wait_until_mid_run()
        terminated.process.send_signal(signal.SIGTERM)
        runs["terminated_rc"] = terminated.wait(600)
        runs["alive_after_sigterm"] = _live(terminated.run_id, settle=30)
        rerun = runs["rerun"] = start("rerun")
        runs["rerun_rc"] = rerun.wait()
        last = max(rerun.submitted().values(), key=int)
        runs["batch_script"] = subprocess.run(["scontrol", "write", "batch_script", last, "-"],
                                              capture_output=True, text=True).stdout
        again = runs["again"] = start("again")
        runs["again_rc"] = again.wait(600)
        yield runs
    finally:
        for run in started:
            if run.process.poll() is None:
                run.process.send_signal(signal.SIGKILL)
                run.process.wait()
            if "SLURM run ID" in run.text:
                subprocess.run(["scancel", "--name", run.run_id], check=False)


def _assert_slurm_jobs(run: Run, jobcomp: Path, states=("COMPLETED",)) -> Counter:
    """Every job the run saw finish was submitted by it to SLURM, and slurmctld recorded it as its job."""
    submitted, records = run.submitted(), _completed_jobs(jobcomp)
    local = set(re.findall(r"^localrule (\w+):", run.text, re.M))
    assert local <= {"all"}, f"rules run on the submit host: {local}"  # `all` only collects its inputs
    done = Counter()
    for job, rule in run.finished():
        if rule in local:
            continue
        assert job in submitted, f"{rule} (job {job}) finished without a SLURM submission:\n{run.text[-3000:]}"
        record = records.get(submitted[job])
        assert record is not None, f"SLURM has no completion record of job {submitted[job]} ({rule})"
        assert record["Name"] == run.run_id and record["JobState"] in states and record["ExitCode"] == "0:0", record
        done[rule] += 1
    return done


def _cut_off(run: Run) -> Counter:
    """Rules of the run's SLURM jobs that were submitted but never seen to finish (the run was stopped first)."""
    finished = {job for job, _ in run.finished()}
    rules = dict(SUBMITTED_RULE.findall(run.text))
    return Counter(rules[slurm] for job, slurm in run.submitted().items() if job not in finished)


@pytest.mark.slow
def test_every_job_ran_as_a_slurm_job_of_its_run(slurm_runs):
    stats = slurm_runs["killed"].text.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    dag = Counter({rule: int(count) for rule, count in re.findall(r"^(\w+)\s+(\d+)$", stats, re.M)
                   if rule not in ("total", "all")})  # `all` only collects: a local job, never submitted
    assert sum(dag.values()) >= 10, stats
    done = Counter()
    for name in ("killed", "interrupted", "terminated", "rerun"):
        done += _assert_slurm_jobs(slurm_runs[name], slurm_runs["jobcomp"])
    assert done <= dag, f"a job ran twice: finished SLURM jobs per rule {dict(done)}, the DAG's {dict(dag)}"
    # a job cut off by a stop just after its rule's work was done (and recorded) leaves complete outputs:
    # nothing reruns it. Only such jobs may be missing from the finished ones.
    cut_off = Counter()
    for name in ("killed", "interrupted", "terminated"):
        cut_off += _cut_off(slurm_runs[name])
    assert dag - done <= cut_off, f"finished {dict(done)}, the DAG's {dict(dag)}, cut off by a stop {dict(cut_off)}"
    assert "--latency-wait 60" in slurm_runs["batch_script"], "the slurm profile's latency-wait did not reach jobs"


@pytest.mark.slow
def test_partition_and_account_default_to_the_clusters_or_follow_sbatch_variables(slurm_runs):
    records = _completed_jobs(slurm_runs["jobcomp"])
    default = subprocess.run(["sinfo", "--noheader", "--format=%P"], capture_output=True, text=True).stdout.split()
    default = [name.rstrip("*") for name in default if name.endswith("*")]
    for name in ("killed", "interrupted", "rerun"):
        for job in slurm_runs[name].submitted().values():
            assert (records[job]["Partition"], records[job]["Account"]) == (default[0], ""), records[job]
    steered = slurm_runs["terminated"].submitted().values()
    assert steered and all(records[job]["Partition"] == STEERED["SBATCH_PARTITION"] for job in steered)
    assert all(records[job]["Account"] == STEERED["SBATCH_ACCOUNT"] for job in steered)


@pytest.mark.slow
def test_report_is_produced(slurm_runs):
    assert slurm_runs["rerun_rc"] == 0, slurm_runs["rerun"].text[-5000:]
    report = slurm_runs["workdir"] / "results" / "report"
    summary = pd.read_csv(report / "summary.csv")
    assert len(summary) == 3  # fp32 + 2 calibration sets × 1 method
    assert (report / "index.html").stat().st_size > 10_000


@pytest.mark.slow
def test_timing_job_had_a_node_to_itself(slurm_runs):
    """Rule time_model (the report's speed) asks for --exclusive and all the node's CPUs: no other job overlaps it."""
    from synthcal.cluster.slurm import node_cpus

    records = _completed_jobs(slurm_runs["jobcomp"])
    timed = [job for name in ("killed", "interrupted", "terminated", "rerun")
             for job, rule in SUBMITTED_RULE.findall(slurm_runs[name].text)
             if rule == "time_model" and records.get(job, {}).get("JobState") == "COMPLETED"]
    assert len(timed) == 1, timed
    timing = records[timed[0]]
    assert int(timing["ProcCnt"]) == node_cpus() > 0  # every CPU of the (single) node
    overlapping = [job for job, record in records.items() if job != timed[0] and record["StartTime"] != "Unknown"
                   and record["StartTime"] < timing["EndTime"] and record["EndTime"] > timing["StartTime"]]
    assert overlapping == [], [records[job] for job in overlapping]


@pytest.mark.slow
def test_second_run_does_nothing(slurm_runs):
    again = slurm_runs["again"]
    assert slurm_runs["again_rc"] == 0, again.text[-3000:]
    assert "Nothing to be done" in again.text and not again.submitted()


@pytest.mark.slow
def test_ctrl_c_cancels_the_runs_slurm_jobs(slurm_runs):
    interrupted = slurm_runs["interrupted"]
    assert slurm_runs["interrupted_rc"] != 0
    assert "Terminating processes on user request" in interrupted.text, interrupted.text[-3000:]
    assert slurm_runs["alive_after_sigint"] == [], "SLURM jobs outlived the interrupted run"
    records = _completed_jobs(slurm_runs["jobcomp"])
    assert set(slurm_runs["active_at_sigint"]) <= set(interrupted.submitted().values())
    assert {records[job]["JobState"] for job in slurm_runs["active_at_sigint"]} == {"CANCELLED"}


@pytest.mark.slow
def test_sigterm_mid_run_finishes_running_jobs_submits_no_more_and_a_rerun_completes(slurm_runs):
    text = slurm_runs["terminated"].text
    marker = "Will exit after finishing currently running jobs"
    assert marker in text, text[-3000:]
    before, after = text.split(marker, 1)
    submitted_before = set(SUBMITTED_IDS.findall(before))
    finished_before = {job for job, _ in FINISHED.findall(before)}
    assert submitted_before - finished_before, "SIGTERM was meant to arrive while a SLURM job was active"
    # the SLURM plugin (2.8) runs sbatch in a thread after announcing the job: a job scheduled before SIGTERM may
    # report its submission after it, but no job may be scheduled after it
    announced_before = set(ANNOUNCED.findall(before))
    assert submitted_before <= announced_before, before[-3000:]
    assert not ANNOUNCED.search(after), "a job was scheduled after SIGTERM"
    assert set(SUBMITTED_IDS.findall(after)) <= announced_before, "a job was submitted after SIGTERM"
    assert set(SUBMITTED_IDS.findall(text)) <= {job for job, _ in FINISHED.findall(text)}, \
        "a running job was not waited for"
    assert slurm_runs["alive_after_sigterm"] == []
    assert slurm_runs["rerun_rc"] == 0, slurm_runs["rerun"].text[-5000:]


@pytest.mark.slow
def test_guard_refuses_runs_while_one_executes(slurm_runs):
    outside, same = slurm_runs["outside"], slurm_runs["same"]
    for run, rc in ((outside, slurm_runs["outside_rc"]), (same, slurm_runs["same_rc"])):
        assert rc != 0 and "another Snakemake run is executing jobs" in run.text, run.text[-3000:]
        assert not run.submitted()
    assert not (slurm_runs["workdir"] / "results/gan/outside/real.npz").exists()
    # the refused run's exit deleted the running run's Snakemake lock (9.27.1): the guard is what stopped `same`
    assert slurm_runs["locks_after_outside"] == []


@pytest.mark.slow
def test_hard_kill_orphans_block_the_rerun_until_cancelled(slurm_runs):
    blocked = slurm_runs["blocked"]
    assert slurm_runs["unlock"].returncode == 0, slurm_runs["unlock"].stderr[-2000:]
    assert slurm_runs["blocked_rc"] != 0 and not blocked.submitted(), blocked.text[-3000:]
    killed = slurm_runs["killed"]
    named = re.search(rf"still queued or running \(([\d_ ]+) of run {killed.run_id}\)", blocked.text)
    assert named, blocked.text[-3000:]
    # the frozen orphans, and any job the killed run submitted in its last moment and still running
    assert set(slurm_runs["orphans"]) <= set(named.group(1).split()) <= set(killed.submitted().values())
    assert f"Cancel them (scancel --name {killed.run_id})" in blocked.text
    records = _completed_jobs(slurm_runs["jobcomp"])
    assert {records[job]["JobState"] for job in slurm_runs["orphans"]} == {"CANCELLED"}
