"""A single-node SLURM on localhost for the slow tests: munge, slurmctld and slurmd from the
operating system's packages, configured in a temporary folder and stopped afterwards.

Installs `slurm-wlm munge` with apt-get when they are missing (as root); skips with the reason
when that is impossible (not root, no apt-get, no network). Nothing outside the temporary folder
is configured: the daemons get every path and port on their command line or in slurm.conf, and
the clients find slurm.conf through SLURM_CONF.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

DAEMONS = ("munged", "slurmctld", "slurmd")


@dataclass(frozen=True)
class LocalSlurm:
    """A running single-node cluster: the environment its clients need, and its log folder."""

    env: dict[str, str]
    logs: Path

    def run(self, *command: str) -> str:
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, check=True)
        return done.stdout

    def wait_until_idle(self, timeout_s: float) -> None:
        """Wait until no job is queued or running; fail with the daemons' logs after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while self.run("squeue", "--noheader").strip():
            if time.monotonic() > deadline:
                queue = self.run("squeue", "--all", "--long")
                pytest.fail(f"jobs still queued after {timeout_s} s:\n{queue}\n{self.tail_logs()}")
            time.sleep(2)

    def tail_logs(self) -> str:
        parts = []
        for log in sorted(self.logs.glob("*.log")):
            lines = log.read_text(errors="replace").splitlines()[-20:]
            parts.append(f"--- {log.name}\n" + "\n".join(lines))
        return "\n".join(parts)


def _install() -> None:
    if all(shutil.which(name) for name in (*DAEMONS, "sbatch")):
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("SLURM is not installed and cannot be (needs root and apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "slurm-wlm", "munge"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            pytest.skip(f"cannot install SLURM: {' '.join(command)}: {done.stderr[-300:]}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _slurm_conf(root: Path, host: str, socket_path: Path) -> str:
    memory_mb = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20 * 0.8)
    cpus = os.cpu_count() or 1
    return f"""ClusterName=sparsessp-test
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={socket_path}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/logs/slurmctld.log
SlurmdLogFile={root}/logs/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


@pytest.fixture(scope="module")
def local_slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSlurm]:
    """munged, slurmctld and slurmd on localhost until the module's tests are done."""
    _install()
    if os.geteuid() != 0:
        pytest.skip("the local SLURM runs its daemons as root (SlurmUser=root)")
    root = tmp_path_factory.mktemp("slurm")
    for name in ("state", "spool", "logs", "munge"):
        (root / name).mkdir()
    munge = root / "munge"
    munge.chmod(0o700)
    key = munge / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    socket_path = munge / "munge.socket"
    host = socket.gethostname().split(".")[0]
    conf = root / "slurm.conf"
    conf.write_text(_slurm_conf(root, host, socket_path))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    started: list[subprocess.Popen[bytes]] = []
    munged = ["munged", "--foreground", "--force", f"--socket={socket_path}", f"--key-file={key}"]
    munged += [f"--pid-file={munge}/munged.pid", f"--seed-file={munge}/munged.seed"]
    munged += [f"--log-file={root}/logs/munged.log"]
    commands = [
        munged,
        ["slurmctld", "-D", "-i", "-f", str(conf)],
        ["slurmd", "-D", "-N", host, "-f", str(conf)],
    ]
    cluster = LocalSlurm(env, root / "logs")
    try:
        for command in commands:
            log = (root / "logs" / f"{command[0]}.stdout").open("wb")
            started.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT))
            time.sleep(1)
        deadline = time.monotonic() + 60
        while "idle" not in _sinfo(env):
            if time.monotonic() > deadline or any(p.poll() is not None for p in started):
                pytest.skip(f"the local SLURM did not come up:\n{cluster.tail_logs()}")
            time.sleep(1)
        yield cluster
    finally:
        for process in reversed(started):
            process.terminate()
        for process in reversed(started):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _sinfo(env: dict[str, str]) -> str:
    done = subprocess.run(
        ["sinfo", "--noheader", "--format=%T"], env=env, capture_output=True, text=True
    )
    return done.stdout
