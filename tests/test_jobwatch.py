"""A local job ends with its run and never runs beside an orphan of itself (synthcal/cluster/jobwatch.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from synthcal.cluster.jobwatch import RUN_VARIABLE, OrphanJobError, alive, lock_outputs

# watches the run, says so, then holds the GIL in C for minutes (catastrophic regex backtracking), as a C extension
# loading for seconds does: a watcher thread could not run, a watcher process can
JOB = textwrap.dedent("""
    import re, sys
    from synthcal.cluster.jobwatch import watch_run
    print(watch_run(), flush=True)
    re.match(r"(a+)+$", "a" * 40 + "b")
""")


def _env(run_pid: int) -> dict:
    return {**os.environ, RUN_VARIABLE: f"{run_pid}@{os.uname().nodename}"}


def _wait_gone(process: subprocess.Popen, limit: float) -> float:
    start = time.monotonic()
    while process.poll() is None:
        assert time.monotonic() - start < limit, "the job outlived its run"
        time.sleep(0.02)
    return time.monotonic() - start


def test_a_job_busy_in_c_code_ends_within_2_s_of_its_run(tmp_path):
    run = subprocess.Popen(["sleep", "600"])  # the Snakemake run
    job = subprocess.Popen([sys.executable, "-c", JOB], env=_env(run.pid), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        assert job.stdout.readline().strip() == str(run.pid)
        time.sleep(0.5)
        assert job.poll() is None  # the run lives: the job goes on
        run.kill()
        run.wait()
        took = _wait_gone(job, 2.0)
        assert job.returncode == -signal.SIGKILL
        assert f"(pid {run.pid}) is gone; stopping the job" in job.stderr.read()
        print(f"job gone {took:.2f} s after its run")
    finally:
        for process in (run, job):
            if process.poll() is None:
                process.kill()
                process.wait()


def test_a_job_whose_run_is_gone_does_not_start_and_an_unguarded_job_is_not_watched():
    gone = subprocess.Popen(["true"])
    gone.wait()
    job = subprocess.run([sys.executable, "-c", JOB.replace("re.match", "print('ran'); re.match")],
                         env=_env(gone.pid), capture_output=True, text=True, timeout=60)
    assert job.returncode == 1 and "ran" not in job.stdout
    assert f"(pid {gone.pid}) is gone; not starting the job" in job.stderr
    env = {key: value for key, value in os.environ.items() if key != RUN_VARIABLE}  # dry run, --no-hooks
    plain = subprocess.run([sys.executable, "-c", "from synthcal.cluster.jobwatch import watch_run; "
                            "print(watch_run())"], env=env, capture_output=True, text=True, timeout=60)
    assert plain.stdout.strip() == "None", plain.stderr
    assert not alive(gone.pid)


def test_the_watcher_ends_with_a_job_that_ends_normally():
    run = subprocess.Popen(["sleep", "600"])
    try:
        job = subprocess.run([sys.executable, "-c", "import os; from synthcal.cluster.jobwatch import watch_run, "
                              "_descendants; watch_run(); print(*_descendants(os.getpid()))"],
                             env=_env(run.pid), capture_output=True, text=True, timeout=60)
        assert job.returncode == 0, job.stderr
        (watcher,) = map(int, job.stdout.split())
        deadline = time.monotonic() + 2
        while alive(watcher):
            assert time.monotonic() < deadline, "the watcher outlived its job"
            time.sleep(0.05)
    finally:
        run.kill()
        run.wait()


HOLDER = textwrap.dedent("""
    import sys, time
    from synthcal.cluster.jobwatch import lock_outputs
    lock_outputs(sys.argv[2:], directory=sys.argv[1])
    print("held", flush=True)
    time.sleep(600)
""")


def test_a_job_waits_for_an_orphan_of_the_same_outputs_then_refuses_naming_it(tmp_path):
    outputs = [str(tmp_path / "int8.xml"), str(tmp_path / "int8.bin")]
    orphan = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "locks"), *outputs],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert orphan.stdout.readline().strip() == "held"
        start = time.monotonic()
        with pytest.raises(OrphanJobError, match=f"still running \\(pid {orphan.pid}\\)"):
            lock_outputs(outputs[::-1], wait=0.5, directory=tmp_path / "locks")  # same outputs, any order
        assert time.monotonic() - start >= 0.5
        lock_outputs([str(tmp_path / "other.xml")], wait=0, directory=tmp_path / "locks")  # other outputs: free
        subprocess.Popen(["sh", "-c", f"sleep 0.3; kill -9 {orphan.pid}"])
        lock_outputs(outputs, wait=5, directory=tmp_path / "locks")  # the orphan ends: the job goes on
    finally:
        orphan.kill()
        orphan.wait()


def test_every_workflow_script_guards_itself_before_any_other_import():
    from conftest import REPO

    for script in sorted((REPO / "workflow_scripts").glob("*.py")):
        lines = [line for line in script.read_text().splitlines() if line.strip() and not line.startswith("#")]
        assert lines[0] == "from synthcal.cluster.jobwatch import guard_job", script.name
        assert lines[1].startswith("guard_job(snakemake)"), script.name


def _snakemake_command(workdir, config, *args: str) -> list[str]:
    from conftest import REPO

    return [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--cores", "1",
            "--rerun-incomplete", *args, "--configfile", str(REPO / "config.yaml"), str(config)]


def _job_process(script: str, run: subprocess.Popen, limit: float = 300) -> int:
    """The pid of the job running ``script`` (Snakemake's copy of it) once it starts."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        assert run.poll() is None, f"the run ended before its {script} job started: {run.args}"
        for entry in os.listdir("/proc"):
            try:
                if entry.isdigit() and script.encode() in open(f"/proc/{entry}/cmdline", "rb").read():
                    return int(entry)
            except OSError:
                continue
        time.sleep(0.02)
    raise AssertionError(f"no {script} job started")


def _kill_run_at(workdir, config, target: str, script: str) -> float:
    """Start a real run of ``target``, SIGKILL it as soon as the ``script`` job starts (still importing), and
    return how long the job outlived it."""
    log = open(workdir / f"{script}.run.log", "w")
    run = subprocess.Popen(_snakemake_command(workdir, config, target), stdout=log, stderr=subprocess.STDOUT,
                           start_new_session=True)
    try:
        try:
            job = _job_process(script, run)
        except AssertionError:
            raise AssertionError((workdir / f"{script}.run.log").read_text()[-3000:]) from None
        run.kill()
        run.wait()
        start = time.monotonic()
        while alive(job):
            assert time.monotonic() - start < 2.0, f"the {script} job outlived its run by 2 s"
            time.sleep(0.02)
        return time.monotonic() - start
    finally:
        if run.poll() is None:
            run.kill()
        run.wait()
        log.close()


@pytest.mark.slow
def test_real_export_and_quantize_jobs_end_with_a_killed_run_and_never_run_beside_an_orphan(tmp_path):
    import yaml
    from conftest import shared_path

    lossless = shared_path("data", "cifar10-lossless")
    config = tmp_path / "kill.yaml"
    config.write_text(yaml.safe_dump({
        "study": {"models": ["resnet20"], "calibration": ["noise"], "methods": ["default"], "test_sets": []},
        "data": {"source": "folder", "folders": {"train": str(lossless / "train"), "test": str(lossless / "test")},
                 "limit": {"test": 100}},
        "models": {"resnet20": {"weights": {"source": "path",
                                            "path": str(shared_path("weights", "cifar10_resnet20-4118986f.pt"))}}},
        "calibration": {"noise": {"kind": "noise", "count": 30, "seed": 0}}}))
    quantized = tmp_path / "results/quantized/resnet20/noise/default"
    ir = tmp_path / "results/models/resnet20/fp32.xml"
    took = _kill_run_at(tmp_path, config, str(ir.relative_to(tmp_path)), "export_model.py")
    time.sleep(1)
    assert not ir.exists()  # nothing written after the kill
    print(f"export job gone {took:.2f} s after its run")
    subprocess.run(_snakemake_command(tmp_path, config, "--unlock"), check=True, capture_output=True)
    target = str(quantized.relative_to(tmp_path) / "int8.xml")
    took = _kill_run_at(tmp_path, config, target, "quantize.py")
    time.sleep(1)
    assert not (quantized / "int8.xml").exists()
    print(f"quantize job gone {took:.2f} s after its run")
    subprocess.run(_snakemake_command(tmp_path, config, "--unlock"), check=True, capture_output=True)

    # an orphan of the quantize job (here a process holding its outputs' lock) is waited for, then refused
    outputs = [str(quantized / name) for name in ("int8.xml", "int8.bin", "quantize.json")]
    orphan = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / ".snakemake/synthcal-jobs"), *outputs],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert orphan.stdout.readline().strip() == "held"
        refused = subprocess.run(_snakemake_command(tmp_path, config, target), capture_output=True, text=True,
                                 timeout=600)
        assert refused.returncode != 0
        assert f"is still running (pid {orphan.pid})" in refused.stdout + refused.stderr
        assert not (quantized / "int8.xml").exists()
    finally:
        orphan.kill()
        orphan.wait()
    done = subprocess.run(_snakemake_command(tmp_path, config, target),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (quantized / "int8.xml").exists()


def test_a_shell_rules_module_runs_watched_with_its_arguments(tmp_path):
    (tmp_path / "sleeper.py").write_text("import sys, time\nprint(sys.argv[1:], flush=True)\ntime.sleep(60)\n")
    run = subprocess.Popen(["sleep", "600"])
    env = {**_env(run.pid), "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    job = subprocess.Popen([sys.executable, "-m", "synthcal.cluster.jobwatch", "sleeper", "--set", "a b"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert job.stdout.readline().strip() == "['--set', 'a b']"
        run.kill()
        run.wait()
        _wait_gone(job, 2.0)
        assert job.returncode == -signal.SIGKILL
    finally:
        for process in (run, job):
            if process.poll() is None:
                process.kill()
                process.wait()
