"""PKDOT on the embedded synthetic dataset (binary pain-like task), tiny models: runs on a laptop CPU.

  pkdot train --config=synthetic --workdir=runs/synthetic
  pkdot train --config=synthetic:smoke --workdir=/tmp/smoke   # seconds, for tests

Data: generated on first use under config.data.data_dir (no download). Pipeline: teacher (video + physio,
gated per-sample fusion) -> T-Net (MSE) -> student (video + T-Net + fusion) with task + 0.6 x PKDOT.
"""

from pkdot_jax.configs import common


def get_config(arg: str = ""):
  config = common.base_config("tiny")
  config.data.config_name = "binary"
  config.model.spectrogram.fs = 512.0  # synthetic physio rate
  config.model.logmel.fs = 8000.0      # synthetic audio rate
  config.batch_size = 32
  config.data.num_folds = 5
  config.optimizer.learning_rate = 1e-3  # 3e-3 made the multitask teacher's eval accuracy oscillate
  config.stages.teacher.num_epochs = 8
  config.stages.tnet.num_epochs = 10
  config.stages.student.num_epochs = 8
  config.distill.kwargs = {"k": 8, "epsilon": 0.01}
  if arg == "smoke":
    config.data.overrides = {"num_subjects": 10, "samples_per_subject": 8}
    config.batch_size = 16
    config.eval_batch_size = 32
    config.stages.teacher.num_epochs = 1
    config.stages.tnet.num_epochs = 1
    config.stages.student.num_epochs = 1
    config.distill.kwargs = {"k": 4, "epsilon": 0.01, "max_iterations": 200}
    config.progress = False
  elif arg in ("demo", "demo_quick"):
    # The demo's students all start from the teacher's visual backbone; the multitask teacher serves MT-PKDOT
    # and every other method alike (its joint head is the plain teacher's head).
    config.model.multitask = True
    config.cache_teacher = True  # deterministic inputs: teacher outputs once per run, not in every step
    config.data.num_folds = 3
    config.data.in_memory = True             # a few MB: decoded once, not in every epoch of every run
    config.checkpoint.min_interval_secs = 60.0  # runs of seconds: an interrupted one restarts instead
    config.test_every_epoch = False  # select on validation, score the test split once
    config.progress = False
    # 16 subjects x 24 clips of 4 frames (half the compute of 8; the expression bump still lands in the clip):
    # per fold about 208 training, 48 validation and 128 test clips.
    config.data.overrides = {"num_subjects": 16, "samples_per_subject": 24, "num_frames": 4}
    config.model.input_shapes.video = (4, 32, 32, 3)
    config.stages.tnet.num_epochs = 8
    config.stages.student.num_epochs = 5
    if arg == "demo_quick":
      config.data.overrides = {"num_subjects": 8, "samples_per_subject": 12, "num_frames": 4}
      config.batch_size = 16
      config.eval_batch_size = 16  # validation splits of 12-24 clips: less padding than 64
      config.stages.teacher.num_epochs = 4
      config.stages.tnet.num_epochs = 2
      config.stages.student.num_epochs = 2
      config.distill.kwargs = {"k": 4, "epsilon": 0.01}
  elif arg:
    raise ValueError(f"synthetic config: unknown variant {arg!r} (use '', 'smoke', 'demo' or 'demo_quick')")
  return config
