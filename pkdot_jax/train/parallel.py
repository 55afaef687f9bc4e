"""The one place that knows about devices: the data-parallel mesh, shardings, and global batches.

Data parallelism is `jax.jit` over a 1-D mesh with axis "data" spanning every device of every process (the modern
form of `pmap`): parameters and optimizer state are replicated, the batch is split on its leading axis, and XLA
inserts the gradient all-reduce. Because the jitted step sees *global* arrays, batch-level relation losses
(PKDOT's B x B similarity matrices, RKD, PKT, ...) are computed over the global batch, exactly as on one device.

The mesh axis is of type Auto so that XLA may re-shard intermediates freely (a B x B matrix built from a
batch-sharded embedding needs the whole batch); with the Explicit default of `jax.make_mesh` every such step would
need a `reshard` in model code.

Members (several seeds or weights trained side by side) run under one executor, chosen here once for the
backend (`members_in_sequence`): one vmapped program on accelerators, the single-member program called per
member on CPUs (`over_members`).

Multi-host: call `initialize_distributed()` before anything touches a device. Each process then reads only its
shard of the data (`process_shard()`), and `global_batch()` assembles the process-local NumPy batches into one
global `jax.Array`.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from pkdot_jax import errors

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
  # CPU processes need a collectives implementation to all-reduce across processes (GPUs and TPUs bring theirs).
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                             process_id=process_id)


def make_mesh(num_devices: int | None = None) -> Mesh:
  """A 1-D data-parallel mesh over the first `num_devices` devices (default: all devices of all processes)."""
  devices = jax.devices()
  if num_devices is not None:
    if not 1 <= num_devices <= len(devices):
      raise errors.ConfigError(f"make_mesh: asked for {num_devices} devices, {len(devices)} are available")
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
    raise errors.ConfigError(f"global batch size {global_batch_size} is not divisible by the {num_devices} devices of "
                             f"the data mesh; choose a multiple of {num_devices} (config.batch_size)")
  if global_batch_size % jax.process_count():
    raise errors.ConfigError(f"global batch size {global_batch_size} is not divisible by the "
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


def _host_value(x: Any) -> np.ndarray:
  """The global value of an array as NumPy: a jax.Array spanning other processes' devices is gathered."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(x)


def to_host(tree: Any) -> Any:
  """NumPy copies of the global values of (possibly sharded, possibly multi-process) arrays. Host arrays are
  taken as they are: they are the same on every process (replicated state, members stacked on the host)."""
  return jax.tree.map(_host_value, tree)


def gather_local(tree: Any) -> Any:
  """Process-local NumPy arrays (each process's shard of a batch) concatenated over processes in process
  order, the order in which `global_batch` lays out the shards: the fields that go with gathered outputs."""
  if jax.process_count() == 1:
    return jax.tree.map(np.asarray, tree)
  from jax.experimental import multihost_utils
  return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))


# ------------------------------------------------------------------------------------------------- members
def members_in_sequence() -> bool:
  """The member executor of this backend: True on CPUs (the single-member program per member), False on
  GPUs and TPUs (one vmapped program).

  Vmapping per-member convolution kernels makes every convolution a grouped one, and XLA:CPU ran those 5-6x
  slower than the members in sequence; `lax.map` inside one program was slower still
  (experiments/bench/vmap_bench.py, tiny PKDOT student step, B=32, 2-core EPYC, ms per step of all members:
  2 members: sequential 262, vmap 1,474, lax.map 3,186; 4 members: 625, 3,169, 6,203)."""
  return jax.default_backend() == "cpu"


def switch_runs_one_branch(num_members: int) -> bool:
  """Whether a `lax.switch` over several losses executes only the selected one: under vmap (several members
  on an accelerator) every branch is computed and one kept."""
  return num_members == 1 or members_in_sequence()


def stack_host(trees: list[Any]) -> Any:
  """Members' trees stacked on a new leading axis as host (NumPy) arrays: no device program is compiled."""
  return jax.tree.map(lambda *xs: np.stack([_host_value(x) for x in xs]), *trees)


def member_of(x: Any, m: int) -> Any:
  """Member `m` (index on the leading axis) of a host array or of a global array whose leading axis is not
  sharded. A global array is sliced shard by shard on its own devices: no program spans the processes (an eager
  `x[m]` on a multi-process array is one, which every process must dispatch in the same order)."""
  if not isinstance(x, jax.Array) or x.is_fully_addressable:
    return x[m]
  sharding = x.sharding
  if not isinstance(sharding, NamedSharding) or (len(sharding.spec) and sharding.spec[0] is not None):
    raise ValueError(f"member_of: the member axis of a multi-process array must not be sharded, got {sharding}")
  shards = [shard.data[m] for shard in x.addressable_shards]
  return jax.make_array_from_single_device_arrays(x.shape[1:], NamedSharding(sharding.mesh, P(*sharding.spec[1:])),
                                                  shards)


def over_members(fn: Callable, in_axes: tuple, **jit_kwargs) -> Callable:
  """Jitted `fn` applied to every member (the leading axis of the arguments whose in_axes is 0).

  Every executor gives each member the arithmetic of a separate run. In sequence (CPUs) the results come back
  as NumPy arrays: members are sliced and restacked on the host, a copy of a few MB that compiles nothing
  (jitted split/stack programs over a state's hundreds of leaves took 1-2 s to compile for every tree
  structure); the per-member inputs are fresh copies, so nothing is donated.
  """
  if not members_in_sequence():
    return jax.jit(jax.vmap(fn, in_axes=in_axes), **jit_kwargs)
  jit_kwargs = {k: v for k, v in jit_kwargs.items() if k != "donate_argnums"}
  single = jax.jit(fn, **jit_kwargs)
  mapped_positions = tuple(i for i, axis in enumerate(in_axes) if axis == 0)

  def to_host_if_addressable(x):  # a multi-process batch stays a global array: it is sliced on the devices
    return np.asarray(x) if not isinstance(x, jax.Array) or x.is_fully_addressable else x

  def run(*args):
    hosts = {i: jax.tree.map(to_host_if_addressable, args[i]) for i in mapped_positions}
    num_members = jax.tree.leaves(hosts[mapped_positions[0]])[0].shape[0]
    outs = []
    for m in range(num_members):
      full = list(args)
      for i in mapped_positions:
        full[i] = jax.tree.map(lambda x: member_of(x, m), hosts[i])
      outs.append(single(*full))
    return stack_host(outs)

  return run
