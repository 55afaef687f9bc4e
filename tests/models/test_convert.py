"""torchvision weight import: names/shapes map one-to-one (built here with torchvision's naming), leftovers
either way are errors, the one-channel rule, .npz loading, and (when torch is importable) numerical
agreement with a hand-written torch R3D-18 / ResNet-18 using torchvision's parameter names."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from pkdot_jax import models
from pkdot_jax.models import convert


def torchvision_shapes(arch, widths=(64, 128, 256, 512), blocks=(2, 2, 2, 2), in_channels=3, classes=400):
  """Names and shapes of torchvision's r3d_18 / resnet18 state dict (written from torchvision's layout)."""
  k = (3, 3, 3) if arch == "r3d_18" else (3, 3)
  one = (1,) * len(k)
  shapes = {}

  def bn(prefix, c):
    shapes.update({f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
                   f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()})

  if arch == "r3d_18":
    shapes["stem.0.weight"] = (widths[0], in_channels, 3, 7, 7)
    bn("stem.1", widths[0])
  else:
    shapes["conv1.weight"] = (widths[0], in_channels, 7, 7)
    bn("bn1", widths[0])
  cin = widths[0]
  for s, (width, n) in enumerate(zip(widths, blocks)):
    for b in range(n):
      p = f"layer{s + 1}.{b}"
      if arch == "r3d_18":
        shapes[f"{p}.conv1.0.weight"] = (width, cin) + k
        bn(f"{p}.conv1.1", width)
        shapes[f"{p}.conv2.0.weight"] = (width, width) + k
        bn(f"{p}.conv2.1", width)
      else:
        shapes[f"{p}.conv1.weight"] = (width, cin) + k
        bn(f"{p}.bn1", width)
        shapes[f"{p}.conv2.weight"] = (width, width) + k
        bn(f"{p}.bn2", width)
      if b == 0 and (s > 0 or cin != width):
        shapes[f"{p}.downsample.0.weight"] = (width, cin) + one
        bn(f"{p}.downsample.1", width)
      cin = width
  shapes["fc.weight"] = (classes, widths[-1])
  shapes["fc.bias"] = (classes,)
  return shapes


def _zeros(shapes):
  # Broadcast views: the full-size dicts cost no memory.
  return {name: np.broadcast_to(np.float32(0), shape) for name, shape in shapes.items()}


def _learnable_count(shapes):
  return sum(int(np.prod(s)) for n, s in shapes.items() if not n.endswith(("running_mean", "running_var",
                                                                           "num_batches_tracked")))


@pytest.mark.parametrize("arch,module,in_shape,total", [
    ("r3d_18", models.R3D18(), (1, 10, 112, 112, 3), 33_371_472),     # torchvision r3d_18 incl. fc
    ("resnet18", models.ResNet2D(), (1, 64, 64, 1), 11_689_512),       # torchvision resnet18 incl. fc
])
def test_full_size_state_dict_maps_exactly_once(arch, module, in_shape, total):
  shapes = torchvision_shapes(arch, classes=400 if arch == "r3d_18" else 1000)
  assert _learnable_count(shapes) == total  # our shape table is torchvision's
  target = jax.eval_shape(lambda x: module.init(jax.random.key(0), x, train=False),
                          jax.ShapeDtypeStruct(in_shape, jnp.float32))
  converted = convert.torchvision_to_flax(_zeros(shapes), target, arch=arch)
  assert jax.tree.structure(converted) == jax.tree.structure(target)
  assert jax.tree.map(lambda a: tuple(a.shape), converted) == jax.tree.map(lambda a: tuple(a.shape), target)
  # Each torch tensor used exactly once: the converted element count equals torch's minus the classifier
  # (weights) plus the running statistics.
  fc = sum(int(np.prod(s)) for n, s in shapes.items() if n.startswith("fc."))
  first_conv_reduction = 0 if in_shape[-1] == 3 else 2 * 64 * 7 * 7
  stats = sum(int(np.prod(s)) for n, s in shapes.items() if n.endswith(("running_mean", "running_var")))
  assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(converted)) == (
      total - fc - first_conv_reduction + stats)


def test_leftovers_either_way_are_errors():
  tiny = dict(widths=(4, 8, 8, 8), blocks=(1, 1, 1, 1))
  module = models.R3D18(**tiny, stem_width=4)
  target = jax.eval_shape(lambda x: module.init(jax.random.key(0), x, train=False),
                          jax.ShapeDtypeStruct((1, 4, 16, 16, 3), jnp.float32))
  state = _zeros(torchvision_shapes("r3d_18", **tiny))
  convert.torchvision_to_flax(state, target, arch="r3d_18")
  extra = dict(state, **{"layer4.1.conv1.0.weight": np.zeros((8, 8, 3, 3, 3), np.float32)})
  with pytest.raises(ValueError, match=r"no target leaf \(1\): \['layer4.1.conv1.0.weight -> params/layer4_1/"):
    convert.torchvision_to_flax(extra, target, arch="r3d_18")
  missing = {k: v for k, v in state.items() if k != "layer2.0.downsample.1.running_var"}
  with pytest.raises(ValueError, match=r"left unfilled \(1\): \['batch_stats/layer2_0/downsample_bn/var'\]"):
    convert.torchvision_to_flax(missing, target, arch="r3d_18")
  strange = dict(state, **{"stem.0.bias": np.zeros(4, np.float32)})
  with pytest.raises(ValueError, match=r"\['stem.0.bias'\]"):
    convert.torchvision_to_flax(strange, target, arch="r3d_18")
  wrong = dict(state, **{"stem.0.weight": np.zeros((4, 3, 1, 7, 7), np.float32)})
  with pytest.raises(ValueError, match=r"'stem.0.weight' converts to shape \(1, 7, 7, 3, 4\).*\(3, 7, 7, 3, 4\)"):
    convert.torchvision_to_flax(wrong, target, arch="r3d_18")
  with pytest.raises(ValueError, match="arch must be"):
    convert.torchvision_to_flax(state, target, arch="r2plus1d_18")


def test_one_channel_rule_sum_and_mean():
  tiny = dict(widths=(4, 4, 4, 4), blocks=(1, 1, 1, 1))
  module = models.ResNet2D(**tiny, stem_width=4)
  target = jax.eval_shape(lambda x: module.init(jax.random.key(0), x, train=False),
                          jax.ShapeDtypeStruct((1, 32, 32, 1), jnp.float32))
  rng = np.random.default_rng(0)
  state = {k: rng.standard_normal(s).astype(np.float32) for k, s in torchvision_shapes("resnet18", **tiny).items()}
  rgb = state["conv1.weight"]  # (4, 3, 7, 7)
  for rule, reduce in (("sum", np.sum), ("mean", np.mean)):
    got = convert.torchvision_to_flax(state, target, arch="resnet18", first_conv=rule)
    np.testing.assert_allclose(got["params"]["stem_conv"]["kernel"],
                               np.transpose(reduce(rgb, axis=1, keepdims=True), (2, 3, 1, 0)), rtol=1e-6)
    np.testing.assert_array_equal(got["batch_stats"]["layer1_0"]["bn2"]["var"], state["layer1.0.bn2.running_var"])


def test_npz_into_teacher_slots(tmp_path):
  cfg = models.default_config("tiny")
  teacher = models.build_teacher(cfg)
  batch = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, jnp.float32), models.dummy_batch(cfg, 2))
  variables = jax.eval_shape(lambda b: teacher.init(jax.random.key(0), b, train=False), batch)
  variables = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), variables)
  widths, blocks = tuple(cfg.video.widths), tuple(cfg.video.blocks)
  rng = np.random.default_rng(0)
  video_sd = {k: rng.standard_normal(s).astype(np.float32)
              for k, s in torchvision_shapes("r3d_18", widths, blocks).items()}
  np.savez(tmp_path / "r3d.npz", **video_sd)
  image_sd = {k: rng.standard_normal(s).astype(np.float32)
              for k, s in torchvision_shapes("resnet18", widths, blocks).items()}
  np.savez(tmp_path / "resnet.npz", **image_sd)
  loaded = convert.import_torchvision(variables, "visual_backbone", tmp_path / "r3d.npz", arch="r3d_18")
  loaded = convert.import_torchvision(loaded, ("privileged_backbone", "resnet"), tmp_path / "resnet.npz",
                                      arch="resnet18")
  assert jax.tree.structure(loaded) == jax.tree.structure(variables)
  np.testing.assert_array_equal(loaded["params"]["visual_backbone"]["layer2_0"]["downsample_bn"]["scale"],
                                video_sd["layer2.0.downsample.1.weight"])
  np.testing.assert_array_equal(loaded["batch_stats"]["privileged_backbone"]["resnet"]["stem_bn"]["mean"],
                                image_sd["bn1.running_mean"])
  np.testing.assert_array_equal(loaded["params"]["fusion"]["head"]["dense"]["kernel"], 0)  # untouched
  with pytest.raises(ValueError, match="expected a .pth, .pt or .npz"):
    convert.load_state_dict(tmp_path / "weights.bin")


# ---------------------------------------------------------------------------------------------------------
# Numerical agreement with torch (skipped where torch is absent; CI does not install it).


def _torch_resnet(torch, arch, widths, blocks, in_channels):
  """torchvision-layout R3D-18 / ResNet-18 written by hand (no torchvision), parameter names identical."""
  nn = torch.nn
  three_d = arch == "r3d_18"
  conv, bnorm = (nn.Conv3d, nn.BatchNorm3d) if three_d else (nn.Conv2d, nn.BatchNorm2d)

  class Block(nn.Module):
    def __init__(self, cin, cout, stride):
      super().__init__()
      if three_d:
        self.conv1 = nn.Sequential(conv(cin, cout, 3, stride, 1, bias=False), bnorm(cout), nn.ReLU())
        self.conv2 = nn.Sequential(conv(cout, cout, 3, 1, 1, bias=False), bnorm(cout))
      else:
        self.conv1, self.bn1 = conv(cin, cout, 3, stride, 1, bias=False), bnorm(cout)
        self.conv2, self.bn2 = conv(cout, cout, 3, 1, 1, bias=False), bnorm(cout)
      self.downsample = None
      if stride != 1 or cin != cout:
        self.downsample = nn.Sequential(conv(cin, cout, 1, stride, bias=False), bnorm(cout))

    def forward(self, x):
      if three_d:
        y = self.conv2(self.conv1(x))
      else:
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
      return torch.relu(y + (x if self.downsample is None else self.downsample(x)))

  class Net(nn.Module):
    def __init__(self):
      super().__init__()
      if three_d:
        self.stem = nn.Sequential(conv(in_channels, widths[0], (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=False),
                                  bnorm(widths[0]), nn.ReLU())
      else:
        self.conv1, self.bn1 = conv(in_channels, widths[0], 7, 2, 3, bias=False), bnorm(widths[0])
        self.maxpool = nn.MaxPool2d(3, 2, 1)
      cin = widths[0]
      for s, (width, n) in enumerate(zip(widths, blocks)):
        layer = []
        for b in range(n):
          layer.append(Block(cin, width, 2 if (s > 0 and b == 0) else 1))
          cin = width
        setattr(self, f"layer{s + 1}", nn.Sequential(*layer))
      self.fc = nn.Linear(cin, 10)

    def forward(self, x):
      x = self.stem(x) if three_d else self.maxpool(torch.relu(self.bn1(self.conv1(x))))
      for s in range(len(widths)):
        x = getattr(self, f"layer{s + 1}")(x)
      return x.flatten(2).mean(-1)  # pooled features; fc is the classifier we do not import

  net = Net()
  gen = torch.Generator().manual_seed(0)
  with torch.no_grad():  # random BN statistics and affine parameters so that every tensor matters
    for module in net.modules():
      if isinstance(module, bnorm):
        c = module.num_features
        module.weight.copy_(1 + 0.1 * torch.randn(c, generator=gen))
        module.bias.copy_(0.1 * torch.randn(c, generator=gen))
        module.running_mean.copy_(0.1 * torch.randn(c, generator=gen))
        module.running_var.copy_(0.5 + torch.rand(c, generator=gen))
  return net.eval()


def test_converted_r3d18_matches_torch_forward():
  torch = pytest.importorskip("torch")
  widths, blocks = (8, 16, 16, 32), (2, 2, 2, 2)
  net = _torch_resnet(torch, "r3d_18", widths, blocks, 3)
  state = {k: v.numpy() for k, v in net.state_dict().items()}
  assert set(state) == set(torchvision_shapes("r3d_18", widths, blocks, classes=10))
  clip = np.random.default_rng(0).standard_normal((2, 5, 20, 20, 3)).astype(np.float32)  # (B, T, H, W, C)
  with torch.no_grad():
    expected = net(torch.from_numpy(clip).permute(0, 4, 1, 2, 3)).numpy()
  module = models.R3D18(widths=widths, blocks=blocks, stem_width=8)
  target = jax.eval_shape(lambda x: module.init(jax.random.key(0), x, train=False), clip)
  variables = convert.torchvision_to_flax(state, target, arch="r3d_18")
  got = jax.jit(lambda v, x: module.apply(v, x, train=False))(variables, clip)
  np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-4, atol=1e-4)


def test_converted_resnet18_one_channel_matches_torch_on_grey_input():
  torch = pytest.importorskip("torch")
  widths, blocks = (8, 8, 16, 16), (2, 2, 2, 2)
  net = _torch_resnet(torch, "resnet18", widths, blocks, 3)
  state = {k: v.numpy() for k, v in net.state_dict().items()}
  grey = np.random.default_rng(1).standard_normal((2, 33, 29, 1)).astype(np.float32)
  with torch.no_grad():  # the RGB network on the grey image replicated to 3 channels
    expected = net(torch.from_numpy(np.repeat(grey, 3, axis=-1)).permute(0, 3, 1, 2)).numpy()
  module = models.ResNet2D(widths=widths, blocks=blocks, stem_width=8, in_channels=1)
  target = jax.eval_shape(lambda x: module.init(jax.random.key(0), x, train=False), grey)
  variables = convert.torchvision_to_flax(state, target, arch="resnet18", first_conv="sum")
  got = jax.jit(lambda v, x: module.apply(v, x, train=False))(variables, grey)
  np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------------------
# One-line mismatch reports and the conversion command.


def test_first_mismatch_names_the_tensor_and_both_shapes():
  tiny = dict(widths=(4, 8), blocks=(1, 1))
  module = models.R3D18(**tiny, stem_width=4)
  target = jax.eval_shape(lambda x: module.init(jax.random.key(0), x, train=False),
                          jax.ShapeDtypeStruct((1, 4, 16, 16, 3), jnp.float32))
  state = _zeros(torchvision_shapes("r3d_18", **tiny))
  assert convert.first_mismatch(state, target, arch="r3d_18") is None
  wrong = dict(state, **{"layer2.0.conv2.0.weight": np.zeros((8, 8, 1, 3, 3), np.float32)})
  assert convert.first_mismatch(wrong, target, arch="r3d_18") == (
      "tensor 'layer2.0.conv2.0.weight' has shape (8, 8, 1, 3, 3), the configured backbone expects (8, 8, 3, 3, 3)")
  image = _zeros(torchvision_shapes("resnet18", **tiny))
  assert "holds a torchvision resnet18 state dict" in convert.first_mismatch(image, target, arch="r3d_18")
  assert "neither 'stem.0.weight' nor 'conv1.weight'" in convert.first_mismatch({"w": np.zeros(1)}, target,
                                                                               arch="r3d_18")
  deeper = _zeros(torchvision_shapes("r3d_18", widths=(4, 8, 8), blocks=(1, 1, 1)))
  assert convert.first_mismatch(deeper, target, arch="r3d_18").startswith("tensor 'layer3.0.")
  missing = {k: v for k, v in state.items() if k != "layer2.0.downsample.1.running_var"}
  assert convert.first_mismatch(missing, target, arch="r3d_18") == (
      "has no tensor 'layer2.0.downsample.1.running_var' of shape (8,) that the configured backbone needs "
      "(1 missing)")
  # Every leaf's torch name inverts the mapping.
  for key in traverse_util.flatten_dict({c: dict(target[c]) for c in target}):
    assert convert.torch_name(key, "r3d_18") in state, key


def test_convert_command_writes_the_same_tensors(tmp_path, capsys):
  rng = np.random.default_rng(0)
  state = {k: rng.standard_normal(s).astype(np.float32)
           for k, s in torchvision_shapes("resnet18", (4, 4), (1, 1)).items()}
  np.savez(tmp_path / "in.npz", **state)  # a .pth needs torch; the command reads any state dict file
  assert convert.main([str(tmp_path / "in.npz"), str(tmp_path / "out.npz")]) == 0
  assert "torchvision resnet18" in capsys.readouterr().out
  with np.load(tmp_path / "out.npz") as out:
    assert sorted(out.files) == sorted(state)
    for name in state:
      np.testing.assert_array_equal(out[name], state[name])
  np.savez(tmp_path / "other.npz", w=np.zeros(3))
  assert convert.main([str(tmp_path / "other.npz"), str(tmp_path / "x.npz")]) == 2
  assert convert.main([str(tmp_path / "in.npz"), str(tmp_path / "x.bin")]) == 2
  assert not (tmp_path / "x.npz").exists() and not (tmp_path / "x.bin").exists()
