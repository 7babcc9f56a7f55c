"""The `cluster:` section of a matrix file: what each SLURM job of the matrix asks for.

One job per entry (the models are small: one GPU each beats multi-node training), submitted as
one array job per set of resources. Entries of a topology can ask for more: the paper trains 2D
networks for 7x the epochs of 3D ones, so their time limit differs (`topologies`).

The values become submitit's SLURM parameters (`submitit/slurm/slurm.py`, `_make_sbatch_string`:
its parameter names are sbatch's long options with `_` for `-`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sparsessp_bmz.spec import Topology

#: Requeues of one job after which a run that keeps being stopped is left for a person to look at.
DEFAULT_MAX_REQUEUES = 20
#: The warning signal a job asks SLURM for (sbatch --signal), handled by `training.preemption`.
PREEMPTION_SIGNAL_NAME = "USR1"
#: sbatch options the settings above (or submitit, `_make_sbatch_string` in
#: submitit/slurm/slurm.py) already write: `cluster.sbatch` may not change them behind the
#: validated fields' back. Compared with `_` for `-`, as submitit spells them.
RESERVED_SBATCH = frozenset(
    {
        "array",
        "time",
        "signal",
        "job_name",
        "output",
        "error",
        "partition",
        "cpus_per_task",
        "mem",
        "gpus_per_task",
        "dependency",
        "nodes",
        "open_mode",
    }
)
#: Seconds a run needs after SLURM's warning to save its checkpoint and requeue itself.
CHECKPOINT_MARGIN_S = 60


class Resources(BaseModel):
    """What one job asks SLURM for; unset fields of an override keep the section's value."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    partition: str | None = Field(None, description="sbatch --partition; None: the default.")
    gpus_per_task: int | None = Field(None, ge=0, description="GPUs per job (one model each).")
    cpus_per_task: int | None = Field(None, ge=1, description="CPU cores (data loading).")
    mem_gb: float | None = Field(None, gt=0, description="Memory per job in GB.")
    timeout_min: int | None = Field(None, ge=1, description="Time limit in minutes.")


class ExportResources(Resources):
    """The export job's resources: a CPU job, whatever the training jobs ask for (only an unset
    partition falls back to the section's)."""

    gpus_per_task: int | None = Field(0, ge=0)
    cpus_per_task: int | None = Field(4, ge=1)
    mem_gb: float | None = Field(16, gt=0)
    timeout_min: int | None = Field(120, ge=1)


class ClusterSettings(Resources):
    """How `matrix --executor slurm` submits the entries (defaults: one GPU, 8 cores, 32 GB, 24 h).

    A job that reaches its time limit gets SIGUSR1 `signal_delay_s` seconds before, checkpoints,
    and requeues itself (`training.preemption`), at most `max_requeues` times; so a time limit
    below the whole training is fine, as long as it is well above one epoch.
    """

    gpus_per_task: int | None = Field(1, ge=0)
    cpus_per_task: int | None = Field(8, ge=1)
    mem_gb: float | None = Field(32, gt=0)
    timeout_min: int | None = Field(24 * 60, ge=1)
    array_parallelism: int = Field(
        64, ge=1, description="Array tasks (entries) that may run at once."
    )
    topologies: dict[Topology, Resources] = Field(
        default_factory=dict, description="Per-topology changes, e.g. {2d: {timeout_min: 2880}}."
    )
    export: ExportResources = Field(
        default_factory=ExportResources,
        description="The job of `matrix export` (and `matrix run --export`): CPU only.",
    )
    signal_delay_s: int = Field(
        90, ge=10, description="SIGUSR1 this long before the time limit (sbatch --signal)."
    )
    max_requeues: int = Field(
        DEFAULT_MAX_REQUEUES, ge=0, description="Requeues per entry before it gives up."
    )
    setup: tuple[str, ...] = Field(
        (), description="Shell lines before the job's command, e.g. 'module load cuda'."
    )
    sbatch: dict[str, str] = Field(
        default_factory=dict,
        description="Other sbatch options, e.g. {account: lab, qos: normal, constraint: a100}.",
    )
    log_dir: Path | None = Field(
        None, description="submitit's job files and logs; default SUMMARY_DIR/slurm."
    )

    @field_validator("sbatch")
    @classmethod
    def _leave_set_options_alone(cls, sbatch: dict[str, str]) -> dict[str, str]:
        taken = sorted(key for key in sbatch if key.replace("-", "_") in RESERVED_SBATCH)
        if taken:
            raise ValueError(
                f"may not set {', '.join(taken)}: the matrix sets them from its "
                f"own settings (partition, timeout_min, cpus_per_task, mem_gb, gpus_per_task, "
                f"signal_delay_s) or submitit does; use those fields, or remove the keys"
            )
        return sbatch

    @model_validator(mode="after")
    def _time_for_the_warning(self) -> ClusterSettings:
        """A job must live past SLURM's warning long enough to checkpoint, or it never
        requeues with progress (`training.preemption`)."""
        limits = {"cluster": self.timeout_min} | {
            f"cluster.topologies.{name}": r.timeout_min for name, r in self.topologies.items()
        }
        for where, minutes in limits.items():
            if minutes is not None and minutes * 60 <= self.signal_delay_s + CHECKPOINT_MARGIN_S:
                raise ValueError(
                    f"{where}.timeout_min ({minutes} min) must be longer than signal_delay_s "
                    f"({self.signal_delay_s} s) + {CHECKPOINT_MARGIN_S} s to save a checkpoint; "
                    f"raise timeout_min or lower signal_delay_s"
                )
        return self

    def resources_for(self, topology: str | None) -> Resources:
        """This section's resources with the topology's override (None: the export job's)."""
        own = Resources.model_validate(self.model_dump(include=set(Resources.model_fields)))
        change = self.export if topology is None else self.topologies.get(topology)  # type: ignore[call-overload]
        if change is None:
            return own
        return own.model_copy(update=change.model_dump(exclude_none=True))

    def slurm_parameters(self, resources: Resources, job_name: str) -> dict[str, Any]:
        """submitit `SlurmExecutor.update_parameters` keywords for one array of jobs."""
        parameters: dict[str, Any] = {
            "job_name": job_name,
            "partition": resources.partition,
            "time": resources.timeout_min,
            "cpus_per_task": resources.cpus_per_task,
            "gpus_per_task": resources.gpus_per_task or None,
            "mem": _sbatch_memory(resources.mem_gb),
            "array_parallelism": self.array_parallelism,
            "setup": list(self.setup) or None,
            # submitit asks for its own signal (USR2 in submitit 1.5, `SlurmJobEnvironment.USR_SIG`)
            # and turns it into an exception inside the job unless the task is Checkpointable;
            # the warning must be SIGUSR1, which `training.preemption` handles (and submitit not)
            "additional_parameters": {
                **self.sbatch,
                "signal": f"{PREEMPTION_SIGNAL_NAME}@{self.signal_delay_s}",
            },
        }
        return {key: value for key, value in parameters.items() if value is not None}


def _sbatch_memory(mem_gb: float | None) -> str | None:
    """sbatch --mem; whole gigabytes as GB, the rest in MB (as submitit's `_convert_mem`)."""
    if mem_gb is None:
        return None
    return f"{int(mem_gb)}GB" if mem_gb == int(mem_gb) else f"{int(mem_gb * 1024)}MB"
