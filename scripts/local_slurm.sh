#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for trying the SLURM path and for the tests
# (tests/slurm_cluster.py calls this script). Debian's packages, run as root without
# systemd: munged, MariaDB + slurmdbd (accounting: submitit polls sacct), slurmctld and
# slurmd, all state in one folder. Install the packages with
#   apt-get install -y slurm-wlm slurmdbd mariadb-server
#
#   scripts/local_slurm.sh start  [DIR]   start the daemons, wait for an idle node, print
#                                         the line to eval:  export SLURM_CONF=DIR/slurm.conf
#   scripts/local_slurm.sh status [DIR]   which daemons run, and sinfo
#   scripts/local_slurm.sh stop   [DIR]   cancel the cluster's jobs, stop the daemons (last started first)
#
# DIR is the argument, else $BPDIP_SLURM_DIR, else ${TMPDIR:-/tmp}/bpdip-slurm. Each
# daemon is stopped by the pid in its own pid file, and only if that process still is
# the daemon started from DIR. The ports 6817-6819 (SLURM) and 3307 (MariaDB) must be
# free. Exit status 3: this machine cannot run the cluster (not root, packages missing,
# a port taken); the reason is the last line on stderr. A used DIR is reset by start.
# Usage: eval "$(scripts/local_slurm.sh start /tmp/slurm)"; sinfo; ...; scripts/local_slurm.sh stop /tmp/slurm
set -euo pipefail
export PATH="/usr/sbin:/sbin:$PATH"

PORTS=(6817 6818 6819 3307)  # slurmctld, slurmd, slurmdbd, mariadbd
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)  # in start order

say() { echo "local_slurm: $*" >&2; }
cannot() { say "$*"; exit 3; }
die() { say "$*"; exit 1; }

cmd=${1:-}
[[ $cmd =~ ^(start|stop|status)$ ]] || { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
DIR=${2:-${BPDIP_SLURM_DIR:-${TMPDIR:-/tmp}/bpdip-slurm}}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
CONF=$DIR/slurm.conf
export SLURM_CONF=$CONF

pidfile() {
  case $1 in
    munged) echo "$DIR/munge/munged.pid" ;;
    mariadbd) echo "$DIR/mysql/mariadbd.pid" ;;
    *) echo "$DIR/run/$1.pid" ;;
  esac
}

# The pid of daemon $1 if it runs and is ours: the process of its pid file, not a zombie,
# running that program with DIR in its command line or environment (so a reused pid or
# another cluster's daemon is never touched). Nothing (status 1) otherwise.
ours() {
  local file pid stat exe
  file=$(pidfile "$1")
  [[ -s $file ]] || return 1
  pid=$(tr -dc 0-9 <"$file")
  [[ -n $pid && -r /proc/$pid/stat ]] || return 1
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  [[ ${stat##*) } != Z* ]] || return 1  # exited; its parent never reaped it
  exe=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $exe == *"$1"* ]] || return 1
  if [[ $exe != *"$DIR"* ]] && ! tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qxF "SLURM_CONF=$CONF"; then
    return 1
  fi
  echo "$pid"
}

# wait_for SECONDS WHAT COMMAND...: retry COMMAND every 0.1 s
wait_for() {
  local limit=$1 what=$2 end
  shift 2
  end=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < end)) || return 1
    sleep 0.1
  done
  [[ -z $what ]] || say "$what"
}

port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
node_idle() { [[ $(sinfo -h -n "$NODE" -o %T 2>/dev/null) == idle ]]; }
munge_ok() { munge -n -S "$DIR/munge/munge.socket.2" | unmunge -S "$DIR/munge/munge.socket.2"; }
mariadb_ok() { mariadb-admin --no-defaults -S "$DIR/mysql/mysqld.sock" -u root ping; }
gone() { ! ours "$1"; }

stop_one() {
  local name=$1 pid
  pid=$(ours "$name") || return 0
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_for 15 "" gone "$name"; then
    say "$name (pid $pid) did not stop on SIGTERM: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait_for 5 "" gone "$name" || say "$name (pid $pid) is still there"
  fi
  say "stopped $name (pid $pid)"
}

# Job steps (slurmstepd and the job's processes) of this cluster left by slurmd
leftover_steps() {
  local pid
  for pid in $(ls /proc | grep -E '^[0-9]+$'); do
    [[ -r /proc/$pid/cmdline ]] || continue
    [[ $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) == slurmstepd* ]] || continue
    tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qxF "SLURM_CONF=$CONF" && echo "$pid"
  done
  return 0
}

do_stop() {
  local name i pids
  if ours slurmctld >/dev/null; then  # no job of ours may outlive the cluster
    scancel --full --quiet --user=root 2>/dev/null || true
    wait_for 20 "" test -z "$(squeue -h -o %i 2>/dev/null)" || say "jobs still listed after scancel"
  fi
  for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
    name=${DAEMONS[i]}
    stop_one "$name"
    if [[ $name == slurmd ]]; then
      pids=$(leftover_steps)
      [[ -z $pids ]] || { say "killing leftover job steps: $pids"; kill -KILL $pids 2>/dev/null || true; }
    fi
  done
}

do_status() {
  local name pid rc=0
  for name in "${DAEMONS[@]}"; do
    if pid=$(ours "$name"); then echo "$name running (pid $pid)"; else echo "$name not running"; rc=1; fi
  done
  echo "export SLURM_CONF=$CONF"
  if ours slurmctld >/dev/null; then sinfo; squeue; fi
  return $rc
}

write_configs() {
  local mem
  mem=$(awk '/^MemAvailable:/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
  cat >"$CONF" <<EOF
# written by scripts/local_slurm.sh: a one-node cluster, state in $DIR
ClusterName=bpdip
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=6817
SlurmdPort=6818
SlurmUser=root
SlurmdUser=root
# our own munged; cred_expire: a requeued job may run again after 6 s (default 121 s)
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket.2,cred_expire=5
CredType=cred/munge
# accounting (submitit reads job states with sacct); the slurmdbd link uses our munged too
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=6819
AccountingStoragePass=$DIR/munge/munge.socket.2
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# no cgroups, no systemd
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
MailProg=/bin/true
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
# as at many sites, a job is requeueable only if it asks (sbatch --requeue): submitit's
# requeue on USR2 needs that (conf/hydra/launcher/slurm.yaml sets it)
JobRequeue=0
# submitit ignores SIGTERM: a cancelled or requeued job is killed after KillWait
KillWait=2
# schedule at once (the defaults add seconds, more after a requeue)
SchedulerParameters=batch_sched_delay=0,sched_interval=1,bf_interval=1
StateSaveLocation=$DIR/spool/ctld
SlurmdSpoolDir=$DIR/spool/d
SlurmctldPidFile=$(pidfile slurmctld)
SlurmdPidFile=$(pidfile slurmd)
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  cat >"$DIR/slurmdbd.conf" <<EOF
# written by scripts/local_slurm.sh (slurmdbd reads it from the folder of SLURM_CONF)
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket.2
DbdAddr=127.0.0.1
DbdHost=$NODE
DbdPort=6819
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=3307
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
PidFile=$(pidfile slurmdbd)
LogFile=$DIR/log/slurmdbd.log
EOF
  chmod 600 "$DIR/slurmdbd.conf"
}

do_start() {
  local name port missing=()
  ((EUID == 0)) || cannot "needs root (the daemons run as root here)"
  for name in munged munge mariadbd mariadb-install-db mariadb slurmdbd slurmctld slurmd sbatch sacct sinfo; do
    command -v "$name" >/dev/null || missing+=("$name")
  done
  ((${#missing[@]} == 0)) || cannot "not installed: ${missing[*]} (apt-get install -y slurm-wlm slurmdbd mariadb-server)"
  for name in "${DAEMONS[@]}"; do
    ! ours "$name" >/dev/null || die "$name already runs from $DIR: stop it first"
  done
  for port in "${PORTS[@]}"; do
    ! port_taken "$port" || cannot "port $port is taken (another SLURM or MariaDB here?); ports 6817-6819 and 3307 must be free"
  done
  NODE=$(hostname -s)
  rm -rf "$DIR"/{munge,mysql,spool,log,run} "$CONF" "$DIR/slurmdbd.conf"  # a fresh cluster: job ids restart at 1
  mkdir -p "$DIR"/{munge,mysql,spool/ctld,spool/d,log,run}
  chmod 755 "$DIR" "$DIR/munge"  # munged refuses a socket folder that is not world-executable
  write_configs

  dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
  chmod 600 "$DIR/munge/munge.key"
  setsid munged --force --socket="$DIR/munge/munge.socket.2" --key-file="$DIR/munge/munge.key" \
    --pid-file="$(pidfile munged)" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed" \
    </dev/null >>"$DIR/log/munged.log" 2>&1
  wait_for 20 "munged up" munge_ok || die "munged did not start: $DIR/log/munged.log"

  mariadb-install-db --no-defaults --user=root --datadir="$DIR/mysql/data" --auth-root-authentication-method=socket \
    --skip-test-db >"$DIR/log/mariadb-install.log" 2>&1 || die "mariadb-install-db failed: $DIR/log/mariadb-install.log"
  setsid mariadbd --no-defaults --user=root --datadir="$DIR/mysql/data" --socket="$DIR/mysql/mysqld.sock" \
    --pid-file="$(pidfile mariadbd)" --bind-address=127.0.0.1 --port=3307 --log-error="$DIR/log/mariadbd.log" \
    </dev/null >>"$DIR/log/mariadbd.log" 2>&1 &
  wait_for 60 "mariadbd up" mariadb_ok || die "mariadbd did not start: $DIR/log/mariadbd.log"
  mariadb --no-defaults -S "$DIR/mysql/mysqld.sock" -u root -e "
    CREATE USER 'slurm'@'localhost' IDENTIFIED BY 'slurm'; CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';" \
    || die "could not create the slurm database user"

  setsid slurmdbd </dev/null >>"$DIR/log/slurmdbd.log" 2>&1
  wait_for 30 "slurmdbd up" port_taken 6819 || die "slurmdbd did not start: $DIR/log/slurmdbd.log"
  setsid slurmctld -c </dev/null >>"$DIR/log/slurmctld.log" 2>&1
  wait_for 30 "slurmctld up" scontrol ping || die "slurmctld did not start: $DIR/log/slurmctld.log"
  setsid slurmd </dev/null >>"$DIR/log/slurmd.log" 2>&1
  wait_for 60 "node $NODE idle" node_idle || die "no idle node: $DIR/log/slurmd.log, $DIR/log/slurmctld.log"
  echo "export SLURM_CONF=$CONF"
}

case $cmd in
  start)
    trap 'rc=$?; if ((rc != 0 && rc != 3)); then say "start failed: stopping what was started"; do_stop; fi' EXIT
    do_start
    trap - EXIT
    ;;
  stop) do_stop ;;
  status) do_status ;;
esac
