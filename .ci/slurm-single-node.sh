#!/usr/bin/env bash
# A single-node SLURM cluster on this Debian machine (slurm-wlm from apt, munge, no accounting database) for
# tests/test_slurm.py and benchmarks/slurm_overhead.py. Run as root.
#   .ci/slurm-single-node.sh install   apt-get install slurmctld slurmd munge
#   .ci/slurm-single-node.sh up        munge key, /etc/slurm/slurm.conf from this machine's CPUs and memory,
#                                      start munged, slurmctld and slurmd; returns when the node is idle
#   .ci/slurm-single-node.sh down      cancel the cluster's jobs, stop the daemons it started by their pids
#   .ci/slurm-single-node.sh status
# Daemon state, pid files and logs live in $SYNTHCAL_SLURM_DIR (default /var/lib/synthcal-slurm); finished
# jobs are recorded by jobcomp/filetxt in $SYNTHCAL_SLURM_DIR/jobcomp.log (the tests read it: no sacct here).
set -euo pipefail

STATE=${SYNTHCAL_SLURM_DIR:-/var/lib/synthcal-slurm}
CONF=/etc/slurm/slurm.conf
MARK="# written by synthcal .ci/slurm-single-node.sh"
MUNGE_KEY=/etc/munge/munge.key
MUNGE_PID=/run/munge/munged.pid

die() { echo "slurm-single-node: $*" >&2; exit 1; }
need_root() { [ "$(id -u)" -eq 0 ] || die "run as root (it installs packages, writes $CONF and starts daemons)"; }

alive() {  # alive PIDFILE: the pid in it names a running process (not a zombie)
  local pid
  [ -s "$1" ] && pid=$(cat "$1") && kill -0 "$pid" 2>/dev/null \
    && ! grep -qE '^State:[[:space:]]+Z' "/proc/$pid/status" 2>/dev/null
}

stop_pid() {  # stop_pid NAME PIDFILE: TERM, wait up to 10 s, then KILL
  local name=$1 pidfile=$2 pid
  alive "$pidfile" || { rm -f "$pidfile"; return 0; }
  pid=$(cat "$pidfile")
  kill -TERM "$pid"
  for _ in $(seq 100); do alive "$pidfile" || break; sleep 0.1; done
  if alive "$pidfile"; then kill -KILL "$pid"; echo "killed $name ($pid)"; else echo "stopped $name ($pid)"; fi
  rm -f "$pidfile"
}

cmd_install() {
  need_root
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
    echo "slurmctld, slurmd and munge already installed"
    return
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurmctld slurmd munge >/dev/null
  echo "installed $(dpkg-query -W -f='slurmctld ${Version}, munge ' slurmctld)$(dpkg-query -W -f='${Version}' munge)"
}

write_conf() {
  if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
    die "$CONF exists and was not written by this script: not touching a real cluster's configuration"
  fi
  local node
  node=$(slurmd -C | head -n 1)  # NodeName=<host> CPUs=… RealMemory=… as slurmd itself detects them
  mkdir -p "$(dirname "$CONF")" "$STATE/ctld" "$STATE/d"
  cat >"$CONF" <<EOF
$MARK
# single node, no accounting database; finished jobs go to jobcomp/filetxt instead of sacct
ClusterName=synthcal
SlurmctldHost=$(hostname -s)
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/jobcomp.log
ReturnToService=2
DefMemPerCPU=1000
MinJobAge=300
$node State=UNKNOWN
PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP
PartitionName=second Nodes=ALL Default=NO MaxTime=INFINITE State=UP
EOF
}

start_munge() {
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    echo "munged already answering"
    return
  fi
  if [ ! -s "$MUNGE_KEY" ]; then
    mkdir -p "$(dirname "$MUNGE_KEY")"
    dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none
  fi
  chown munge:munge "$MUNGE_KEY" && chmod 0400 "$MUNGE_KEY"
  install -d -o munge -g munge -m 0755 /run/munge
  install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
  runuser -u munge -- /usr/sbin/munged
  echo munged >>"$STATE/started"
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local seconds=$1 what=$2
  shift 2
  for _ in $(seq $((seconds * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  die "$what did not happen within ${seconds}s (logs: $STATE/*.log)"
}

node_idle() { sinfo -h -N -o %T | grep -qE '^(idle|mixed|allocated)$'; }

cmd_up() {
  need_root
  command -v slurmctld >/dev/null || die "slurmctld is not installed: run '$0 install' first"
  mkdir -p "$STATE"
  if alive "$STATE/slurmctld.pid" && alive "$STATE/slurmd.pid" && scontrol ping >/dev/null 2>&1; then
    echo "already up"
    return
  fi
  write_conf
  : >"$STATE/started"
  start_munge
  # a fresh cluster every time: no jobs left over from daemons that were killed (their state would be out of sync)
  stop_pid slurmd "$STATE/slurmd.pid"
  stop_pid slurmctld "$STATE/slurmctld.pid"
  rm -rf "${STATE:?}/ctld" "${STATE:?}/d"
  mkdir -p "$STATE/ctld" "$STATE/d"
  [ ! -f "$STATE/jobcomp.log" ] || mv "$STATE/jobcomp.log" "$STATE/jobcomp.log.previous"
  slurmctld -c
  wait_for 20 "slurmctld answering" scontrol ping
  slurmd
  wait_for 30 "node $(hostname -s) idle" node_idle
  echo "up: $(sinfo -h -o '%P %D nodes %c CPUs %m MB %T')"
}

cmd_down() {
  need_root
  if alive "$STATE/slurmctld.pid"; then  # no job outlives the cluster
    squeue --noheader --format=%i 2>/dev/null | xargs -r scancel 2>/dev/null || true
  fi
  stop_pid slurmd "$STATE/slurmd.pid"
  stop_pid slurmctld "$STATE/slurmctld.pid"
  if [ -f "$STATE/started" ] && grep -qx munged "$STATE/started"; then
    stop_pid munged "$MUNGE_PID"
  fi
  rm -f "$STATE/started"
}

cmd_status() {
  for name in slurmctld slurmd; do
    if alive "$STATE/$name.pid"; then echo "$name running ($(cat "$STATE/$name.pid"))"; else echo "$name stopped"; fi
  done
  if alive "$MUNGE_PID"; then echo "munged running ($(cat "$MUNGE_PID"))"; else echo "munged stopped"; fi
  sinfo 2>&1 || true
}

case "${1:-}" in
  install) cmd_install ;;
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *) die "usage: $0 install|up|down|status" ;;
esac
