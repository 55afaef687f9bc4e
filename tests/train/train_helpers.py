"""Helpers of the training tests (imported by file name: pytest puts this folder on sys.path)."""

from pkdot_jax.configs import synthetic


def smoke_config(data_dir, **changes):
  config = synthetic.get_config("smoke")
  config.data.data_dir = str(data_dir)
  config.num_devices = 1
  config.stages.teacher.num_epochs = 2
  for path, value in changes.items():
    node = config
    *parents, leaf = path.split(".")
    for key in parents:
      node = node[key]
    node[leaf] = value
  return config
