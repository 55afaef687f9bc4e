"""The demo's light video backbones: shapes, and the student / teacher assemblies built with them."""

import numpy as np
import pytest

from pkdot_jax import models


@pytest.mark.parametrize("arch", ["frame_cnn", "frame_cnn_spatial", "stack_cnn"])
def test_frame_cnn_variants_give_the_visual_embedding(arch):
  cfg = models.default_config("tiny")
  cfg.video.arch = arch
  cfg.video.widths = (8, 16, 32)
  cfg.input_shapes.video = (4, 32, 32, 3)
  cfg.fusion.num_tokens = 4
  batch = models.dummy_batch(cfg, batch_size=3)
  student = models.build_student(cfg)
  variables = models.init_variables(student, {"video": batch["video"]})
  out = student.apply(variables, {"video": batch["video"]}, train=False)
  assert out.visual.shape == (3, 32) and out.prediction.shape == (3, 2)
  assert np.all(np.isfinite(np.asarray(out.embedding)))
  # A clip's embedding does not depend on the rest of the batch in eval mode.
  single = student.apply(variables, {"video": batch["video"][:1]}, train=False)
  np.testing.assert_allclose(np.asarray(single.embedding), np.asarray(out.embedding[:1]), rtol=1e-5, atol=1e-6)


def test_unknown_arch_is_refused():
  cfg = models.default_config("tiny")
  cfg.video.arch = "r2plus1d"
  with pytest.raises(ValueError, match="video.arch"):
    models.build_video_backbone(cfg)
