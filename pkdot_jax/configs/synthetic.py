"""PKDOT on the embedded synthetic dataset (binary pain-like task), tiny models: runs on a laptop CPU.

  pkdot train --config=synthetic --workdir=runs/synthetic
  pkdot train --config=synthetic:smoke --workdir=/tmp/smoke   # seconds, for tests (smaller models: common.smoke_models)

Data: generated on first use under config.data.data_dir (no download). Pipeline: teacher (video + physio,
gated per-sample fusion) -> T-Net (MSE) -> student (video + T-Net + fusion) with task + 0.6 x PKDOT.
"""

from pkdot_jax import errors
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
  config.distill.method_kwargs = {"pkdot": {"k": 8, "epsilon": 0.01}}
  if arg == "smoke":
    config.data.overrides = {"num_subjects": 10, "samples_per_subject": 8}
    config.batch_size = 16
    config.eval_batch_size = 32
    config.stages.teacher.num_epochs = 1
    config.stages.tnet.num_epochs = 1
    config.stages.student.num_epochs = 1
    config.distill.method_kwargs = {"pkdot": {"k": 4, "epsilon": 0.01, "max_iterations": 200}}
    common.smoke_models(config.model)
  elif arg in ("demo", "demo_quick", "demo_all", "demo_size"):
    # The demo's students all start from the teacher's visual backbone; the multitask teacher serves MT-PKDOT
    # and every other method alike (its joint head is the plain teacher's head).
    config.model.multitask = True
    config.cache_teacher = True  # deterministic inputs: teacher outputs once per run, not in every step
    config.data.in_memory = True             # a few MB: decoded once, not in every epoch of every run
    config.checkpoint.min_interval_secs = 60.0  # runs of seconds: an interrupted one restarts instead
    # A per-frame 2-D CNN (3 stride-2 stages, temporal mean and range of its globally pooled features)
    # instead of the tiny R3D-18: same visual embedding size (64), 2.8x fewer FLOPs and 3.2x faster student
    # steps on a CPU, but less accurate (docs/experiments.md: the video-only student reaches 0.69 against the
    # ridge probe's 0.76). "frame_cnn_spatial" (pooling per location) was more accurate on three folds but hit
    # a non-finite PKDOT loss in fold 1; it stays an option until that is understood.
    config.model.video.arch = "frame_cnn"
    config.model.video.widths = (16, 32, 64)
    # 48 subjects x 24 clips of 4 frames (half the compute of 8; the expression bump still lands in the clip).
    # With 16 subjects the video student was data-starved (0.56-0.58 against a ridge probe's 0.71 on the same
    # folds). 10 subject-disjoint folds: 4-5 test subjects (about 115 clips) and 43-44 training subjects
    # (about 1040 clips) per fold.
    config.data.overrides = {"num_subjects": 48, "samples_per_subject": 24, "num_frames": 4}
    config.model.input_shapes.video = (4, 32, 32, 3)
    config.data.num_folds = 10
    # No validation split: every stage trains a fixed number of epochs and keeps the last one (two validation
    # subjects made selection noise); the test split is scored after every epoch for the learning curves only.
    config.data.val_fraction = 0.0
    config.test_every_epoch = True
    config.stages.teacher.num_epochs = 6
    config.stages.tnet.num_epochs = 5
    config.stages.student.num_epochs = 5
    if arg == "demo_all":
      # The full comparison chooses each loss's weight on validation subjects: 9 of the 43-44 training
      # subjects per fold are held out (epochs are then selected on them too, for every method alike).
      config.data.val_fraction = 0.2
      config.test_every_epoch = False
    elif arg == "demo_size":
      # Training-set size: 60 subjects, 10 folds of 6 test subjects; the sweep keeps n training subjects and
      # moves the other 54 - n non-test subjects to validation (data.val_fraction = 1 - n / 54), so every size
      # is scored on the same test subjects.
      config.data.overrides = {"num_subjects": 60, "samples_per_subject": 24, "num_frames": 4}
      config.test_every_epoch = False
    elif arg == "demo_quick":
      config.data.overrides = {"num_subjects": 8, "samples_per_subject": 12, "num_frames": 4}
      config.data.num_folds = 2
      config.batch_size = 16
      config.eval_batch_size = 16  # splits of 12-48 clips: less padding than 64
      config.stages.teacher.num_epochs = 3
      config.stages.tnet.num_epochs = 2
      config.stages.student.num_epochs = 2
      config.distill.method_kwargs = {"pkdot": {"k": 4, "epsilon": 0.01}}
  elif arg:
    raise errors.ConfigError(f"synthetic config: unknown variant {arg!r} (use '', 'smoke', 'demo', 'demo_quick', "
                             f"'demo_all' or 'demo_size')")
  return config
