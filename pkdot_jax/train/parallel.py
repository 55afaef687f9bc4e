"""The one place that knows about devices: the data-parallel mesh, shardings, and global batches.

Data parallelism is `jax.jit` over a 1-D mesh with axis "data" spanning every device of every process (the modern
form of `pmap`): parameters and optimizer state are replicated, the batch is split on its leading axis, and XLA
inserts the gradient all-reduce. Because the jitted step sees *global* arrays, batch-level relation losses
(PKDOT's B x B similarity matrices, RKD, PKT, ...) are computed over the global batch, exactly as on one device.

The mesh axis is of type Auto so that XLA may re-shard intermediates freely (a B x B matrix built from a
batch-sharded embedding needs the whole batch); with the Explicit default of `jax.make_mesh` every such step would
need a `reshard` in model code.

Multi-host: call `initialize_distributed()` before anything touches a device. Each process then reads only its
shard of the data (`process_shard()`), and `global_batch()` assembles the process-local NumPy batches into one
global `jax.Array`.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def initialize_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None) -> None:
  """Starts the JAX multi-process runtime when there is more than one process.

  Arguments come from flags (`--coordinator_address`, `--num_processes`, `--process_id`) or, when all are
  None, from the environment: JAX detects SLURM, Open MPI and Cloud TPU clusters itself; elsewhere set
  `PKDOT_COORDINATOR`, `PKDOT_NUM_PROCESSES` and `PKDOT_PROCESS_ID`. A single-process run does nothing.
  """
  coordinator_address = coordinator_address or os.environ.get("PKDOT_COORDINATOR")
  if num_processes is None and "PKDOT_NUM_PROCESSES" in os.environ:
    num_processes = int(os.environ["PKDOT_NUM_PROCESSES"])
  if process_id is None and "PKDOT_PROCESS_ID" in os.environ:
    process_id = int(os.environ["PKDOT_PROCESS_ID"])
  cluster_env = any(k in os.environ for k in ("SLURM_JOB_ID", "OMPI_COMM_WORLD_SIZE", "TPU_WORKER_HOSTNAMES"))
  if coordinator_address is None and not cluster_env:
    return
  if num_processes == 1:
    return
  jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                             process_id=process_id)


def make_mesh(num_devices: int | None = None) -> Mesh:
  """A 1-D data-parallel mesh over the first `num_devices` devices (default: all devices of all processes)."""
  devices = jax.devices()
  if num_devices is not None:
    if not 1 <= num_devices <= len(devices):
      raise ValueError(f"make_mesh: asked for {num_devices} devices, {len(devices)} are available")
    devices = devices[:num_devices]
  return jax.make_mesh((len(devices),), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=devices)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def check_global_batch(global_batch_size: int, mesh: Mesh) -> None:
  """The global batch must split evenly over the devices (and processes): say so clearly otherwise."""
  num_devices = mesh.devices.size
  if global_batch_size % num_devices:
    raise ValueError(f"global batch size {global_batch_size} is not divisible by the {num_devices} devices of "
                     f"the data mesh; choose a multiple of {num_devices} (config.batch_size)")
  if global_batch_size % jax.process_count():
    raise ValueError(f"global batch size {global_batch_size} is not divisible by the "
                     f"{jax.process_count()} processes")


def process_shard() -> tuple[int, int]:
  """(shard_index, shard_count) of this process's slice of the data."""
  return jax.process_index(), jax.process_count()


def global_batch(local_batch: dict[str, np.ndarray], mesh: Mesh, *, member_axis: bool = False
                 ) -> dict[str, jax.Array]:
  """Forms global batch-sharded arrays from this process's NumPy batch.

  The batch axis is the leading one, or the second one when `member_axis` (vmapped members: (M, B, ...)).
  String fields (sample names) stay on the host.
  """
  batch_axis = 1 if member_axis else 0
  spec = P(None, DATA_AXIS) if member_axis else P(DATA_AXIS)
  sharding = NamedSharding(mesh, spec)
  out = {}
  for name, value in local_batch.items():
    value = np.asarray(value)
    if value.dtype.kind in "OUS":
      continue
    global_shape = list(value.shape)
    global_shape[batch_axis] *= jax.process_count()
    if global_shape[batch_axis] % mesh.devices.size:
      raise ValueError(f"batch field {name!r}: global batch of {global_shape[batch_axis]} does not divide over "
                       f"the {mesh.devices.size} devices of the data mesh")
    out[name] = jax.make_array_from_process_local_data(sharding, value, tuple(global_shape))
  return out


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places a pytree (parameters, optimizer state, frozen teacher variables) on every device of the mesh."""
  return jax.device_put(tree, replicated(mesh))


def to_host(tree: Any) -> Any:
  """Fully gathered NumPy copies of (possibly sharded, possibly multi-process) arrays."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    tree = multihost_utils.process_allgather(tree, tiled=True)
  return jax.tree.map(np.asarray, tree)
