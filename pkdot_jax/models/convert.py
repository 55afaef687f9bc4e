"""Import torchvision ``r3d_18`` / ``resnet18`` weights into our flax variables ({"params", "batch_stats"}).

Nothing is ever downloaded: the user supplies a checkpoint file. A ``.pth`` is a pickle, so it is read with
``torch.load(path, weights_only=True)`` (no code execution) when torch is installed; an ``.npz`` with the
same tensor names (``np.savez(path, **{k: v.numpy() for k, v in sd.items()})``) needs no torch.

Mapping (torch -> flax, channels-last):
  conv weight (O, I, kT, kH, kW) -> kernel (kT, kH, kW, I, O); (O, I, kH, kW) -> (kH, kW, I, O)
  BatchNorm weight/bias -> params scale/bias; running_mean/running_var -> batch_stats mean/var
  r3d_18:   stem.0 -> stem_conv, stem.1 -> stem_bn, layerS.B.conv1.0/.1 -> layerS_B/conv1, bn1,
            layerS.B.conv2.0/.1 -> conv2, bn2, layerS.B.downsample.0/.1 -> downsample_conv, downsample_bn
  resnet18: conv1 -> stem_conv, bn1 -> stem_bn, layerS.B.{conv1,bn1,conv2,bn2,downsample.0,downsample.1}
Ignored on purpose: the classifier ``fc.*`` (our backbones have none; the task head is trained) and
``num_batches_tracked`` (torch's counter, unused with a fixed momentum).

One-channel first conv (spectrogram ResNets): the RGB filters are **summed** over the input-channel axis
(``first_conv="sum"``, default). For a grey image replicated to three channels the summed filter gives
exactly the RGB network's stem response, so the pretrained BatchNorm statistics after the stem stay
calibrated for inputs of the same scale; ``"mean"`` (one third of that response) is offered for inputs
whose scale one wants to treat as one channel of three.

Strict: every used tensor maps onto exactly one target leaf and every target leaf is filled exactly once;
unknown or missing names, or wrong shapes, raise ValueError listing them (`first_mismatch` names the first
difference in one line, for error messages a user reads before training).

Convert a ``.pth`` once, on a machine with torch, into the torch-free ``.npz`` (same tensor names):
``python -m pkdot_jax.models.convert r3d_18-b3b3357e.pth r3d_18.npz``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
from typing import Any, Mapping

import numpy as np
from flax import traverse_util

_BN_PARAMS = {"weight": ("params", "scale"), "bias": ("params", "bias"),
              "running_mean": ("batch_stats", "mean"), "running_var": ("batch_stats", "var")}
_IGNORED_SUFFIXES = ("num_batches_tracked",)


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Read a torchvision state dict from ``.pth``/``.pt`` (needs torch; weights_only) or ``.npz``."""
  path = os.fspath(path)
  if path.endswith(".npz"):
    with np.load(path, allow_pickle=False) as data:
      return {k: np.asarray(data[k]) for k in data.files}
  if path.endswith((".pth", ".pt")):
    try:
      import torch  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise ValueError(f"load_state_dict: reading {path} needs torch; install it or convert the checkpoint "
                       f"to .npz with the same tensor names") from e
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping):
      raise ValueError(f"load_state_dict: {path} holds a {type(state).__name__}, expected a state dict")
    return {k: v.detach().cpu().numpy() for k, v in state.items()}
  raise ValueError(f"load_state_dict: {path}: expected a .pth, .pt or .npz file")


def _translate(name: str, arch: str) -> tuple[str, tuple[str, ...], str] | None:
  """torch name -> (collection, flax module path, leaf name), or None when the name is not recognised."""
  parts = name.split(".")
  leaf = parts[-1]
  module = ".".join(parts[:-1])
  stem_conv, stem_bn = ("stem.0", "stem.1") if arch == "r3d_18" else ("conv1", "bn1")
  if module == stem_conv and leaf == "weight":
    return "params", ("stem_conv",), "kernel"
  if module == stem_bn and leaf in _BN_PARAMS:
    collection, flax_leaf = _BN_PARAMS[leaf]
    return collection, ("stem_bn",), flax_leaf
  if arch == "r3d_18":
    pattern = r"layer(\d)\.(\d+)\.(conv1\.0|conv1\.1|conv2\.0|conv2\.1|downsample\.0|downsample\.1)"
    names = {"conv1.0": "conv1", "conv1.1": "bn1", "conv2.0": "conv2", "conv2.1": "bn2",
             "downsample.0": "downsample_conv", "downsample.1": "downsample_bn"}
  else:
    pattern = r"layer(\d)\.(\d+)\.(conv1|bn1|conv2|bn2|downsample\.0|downsample\.1)"
    names = {"conv1": "conv1", "bn1": "bn1", "conv2": "conv2", "bn2": "bn2",
             "downsample.0": "downsample_conv", "downsample.1": "downsample_bn"}
  match = re.fullmatch(pattern, module)
  if match is None:
    return None
  block = f"layer{match.group(1)}_{match.group(2)}"
  sub = names[match.group(3)]
  if sub.endswith("conv") or sub in ("conv1", "conv2"):
    return ("params", (block, sub), "kernel") if leaf == "weight" else None
  if leaf in _BN_PARAMS:
    collection, flax_leaf = _BN_PARAMS[leaf]
    return collection, (block, sub), flax_leaf
  return None


def _flat_variables(target: Mapping[str, Any]) -> dict[tuple[str, ...], Any]:
  """The leaves of a backbone's `params` and `batch_stats`, keyed (collection, *path)."""
  flat = {}
  for collection in ("params", "batch_stats"):
    for path, leaf in traverse_util.flatten_dict(dict(target.get(collection, {}))).items():
      flat[(collection,) + tuple(path)] = leaf
  return flat


def _flax_key(name: str, arch: str) -> tuple[str, ...] | None:
  """The (collection, *path) of the flax leaf a torchvision tensor name maps to; None for no leaf."""
  translated = _translate(name, arch)
  return None if translated is None else (translated[0],) + translated[1] + (translated[2],)


def _convert_tensor(name: str, value: np.ndarray, target_shape: tuple[int, ...], is_kernel: bool,
                    first_conv: str) -> np.ndarray:
  value = np.asarray(value, dtype=np.float32)
  if is_kernel:
    # torch (O, I, *k) -> flax (*k, I, O)
    value = np.transpose(value, tuple(range(2, value.ndim)) + (1, 0))
    if value.shape[-2] != target_shape[-2] and target_shape[-2] == 1 and value.ndim == len(target_shape):
      if first_conv not in ("sum", "mean"):
        raise ValueError(f"convert: first_conv must be 'sum' or 'mean', got {first_conv!r}")
      value = value.sum(axis=-2, keepdims=True) if first_conv == "sum" else value.mean(axis=-2, keepdims=True)
  if value.shape != tuple(target_shape):
    raise ValueError(f"convert: tensor {name!r} converts to shape {value.shape}, but the target leaf expects "
                     f"{tuple(target_shape)}")
  return value


def torchvision_to_flax(state_dict: Mapping[str, Any], target: Mapping[str, Any], *, arch: str,
                        first_conv: str = "sum", ignore_prefixes: tuple[str, ...] = ("fc.",)) -> dict:
  """Convert a torchvision state dict into variables shaped like ``target``.

  Args:
    state_dict: torch name -> array (numpy or torch tensors), e.g. from :func:`load_state_dict`.
    target: the backbone's variables {"params", "batch_stats"} (arrays or jax.ShapeDtypeStruct, e.g. from
      ``jax.eval_shape(backbone.init, ...)``): R3D18 for arch "r3d_18", ResNet2D for "resnet18".
    arch: "r3d_18" or "resnet18".
    first_conv: "sum" or "mean" over the RGB filters when the target's first conv has one input channel.
    ignore_prefixes: torch names skipped on purpose (the classifier).

  Returns:
    {"params": ..., "batch_stats": ...} nested dicts of float32 numpy arrays, same tree as ``target``.

  Raises:
    ValueError: unknown or unused torch tensors, target leaves left unfilled or filled twice, shape
      mismatches. The message lists every offending name.
  """
  if arch not in ("r3d_18", "resnet18"):
    raise ValueError(f"torchvision_to_flax: arch must be 'r3d_18' or 'resnet18', got {arch!r}")
  flat_target = _flat_variables(target)
  filled: dict[tuple[str, ...], np.ndarray] = {}
  unknown, duplicated = [], []
  for name, value in state_dict.items():
    if name.startswith(tuple(ignore_prefixes)) or name.endswith(_IGNORED_SUFFIXES):
      continue
    key = _flax_key(name, arch)
    if key is None or key not in flat_target:
      unknown.append(name if key is None else f"{name} -> {'/'.join(key)}")
      continue
    if key in filled:
      duplicated.append(name)
      continue
    value = value.detach().cpu().numpy() if hasattr(value, "detach") else value
    filled[key] = _convert_tensor(name, value, tuple(flat_target[key].shape), key[-1] == "kernel", first_conv)
  missing = sorted("/".join(k) for k in flat_target if k not in filled)
  if unknown or duplicated or missing:
    raise ValueError(
        f"torchvision_to_flax ({arch}): state dict and target do not match one-to-one.\n"
        f"  torch tensors with no target leaf ({len(unknown)}): {unknown}\n"
        f"  torch tensors mapping onto an already filled leaf ({len(duplicated)}): {duplicated}\n"
        f"  target leaves left unfilled ({len(missing)}): {missing}")
  out: dict[str, Any] = {}
  for collection in ("params", "batch_stats"):
    leaves = {k[1:]: v for k, v in filled.items() if k[0] == collection}
    if leaves or collection in target:
      out[collection] = traverse_util.unflatten_dict(leaves)
  return out


def insert_backbone(variables: Mapping[str, Any], path: tuple[str, ...] | str,
                    backbone_variables: Mapping[str, Any]) -> dict:
  """Return ``variables`` with the subtree at ``path`` (e.g. "visual_backbone" or
  ("privileged_backbone", "resnet")) replaced by ``backbone_variables``, in both collections.

  Raises ValueError when the subtree is absent or its leaves' names or shapes differ.
  """
  path = (path,) if isinstance(path, str) else tuple(path)
  out = {}
  for collection, tree in variables.items():
    flat = dict(traverse_util.flatten_dict(dict(tree)))
    if collection in backbone_variables:
      new = traverse_util.flatten_dict(dict(backbone_variables[collection]))
      old = {k[len(path):]: v for k, v in flat.items() if k[:len(path)] == path}
      if set(old) != set(new):
        raise ValueError(f"insert_backbone: {collection}/{'/'.join(path)} has leaves "
                         f"{sorted('/'.join(k) for k in old)}, the converted backbone "
                         f"{sorted('/'.join(k) for k in new)}")
      for k, v in new.items():
        if tuple(old[k].shape) != tuple(v.shape):
          raise ValueError(f"insert_backbone: {collection}/{'/'.join(path + k)} expects shape "
                           f"{tuple(old[k].shape)}, got {tuple(v.shape)}")
        flat[path + k] = v
    out[collection] = traverse_util.unflatten_dict(flat)
  return out


def import_torchvision(variables: Mapping[str, Any], path: tuple[str, ...] | str,
                       checkpoint: str | os.PathLike | Mapping[str, Any], *, arch: str,
                       first_conv: str = "sum") -> dict:
  """Load a torchvision checkpoint (file or state dict) into the backbone at ``path`` of ``variables``.

  Example: ``import_torchvision(teacher_vars, "visual_backbone", "r3d_18-b3b3357e.pth", arch="r3d_18")``;
  ``import_torchvision(teacher_vars, ("privileged_backbone", "resnet"), "resnet18.npz", arch="resnet18")``.
  """
  path = (path,) if isinstance(path, str) else tuple(path)
  state_dict = load_state_dict(checkpoint) if isinstance(checkpoint, (str, os.PathLike)) else checkpoint
  target = {}
  for collection, tree in variables.items():
    sub = tree
    for p in path:
      if p not in sub:
        raise ValueError(f"import_torchvision: no module {'/'.join(path)} in variables[{collection!r}]")
      sub = sub[p]
    target[collection] = sub
  converted = torchvision_to_flax(state_dict, target, arch=arch, first_conv=first_conv)
  return insert_backbone(variables, path, converted)


# ------------------------------------------------------------------------------------------ one-line checks
_STEMS = {"r3d_18": "stem.0.weight", "resnet18": "conv1.weight"}
_BN_NAMES = {value: key for key, value in _BN_PARAMS.items()}  # (collection, flax leaf) -> torch leaf
_BLOCK_NAMES = {"r3d_18": {"conv1": "conv1.0", "bn1": "conv1.1", "conv2": "conv2.0", "bn2": "conv2.1",
                           "downsample_conv": "downsample.0", "downsample_bn": "downsample.1"},
                "resnet18": {"conv1": "conv1", "bn1": "bn1", "conv2": "conv2", "bn2": "bn2",
                             "downsample_conv": "downsample.0", "downsample_bn": "downsample.1"}}


def detect_arch(state_dict: Mapping[str, Any]) -> str | None:
  """"r3d_18" or "resnet18" from the name of the stem's convolution; None when the dict has neither."""
  for arch, stem in _STEMS.items():
    if stem in state_dict:
      return arch
  return None


def torch_name(key: tuple[str, ...], arch: str) -> str:
  """The torchvision name of a flax leaf key (collection, *module path, leaf): the inverse of the mapping."""
  collection, *modules, leaf = key
  stem = {"r3d_18": ("stem.0", "stem.1"), "resnet18": ("conv1", "bn1")}[arch]
  torch_leaf = "weight" if leaf == "kernel" else _BN_NAMES.get((collection, leaf), leaf)
  if modules == ["stem_conv"] or modules == ["stem_bn"]:
    return f"{stem[modules[0] == 'stem_bn']}.{torch_leaf}"
  match = re.fullmatch(r"layer(\d)_(\d+)", modules[0]) if len(modules) == 2 else None
  if match is None:
    return "/".join(key)
  return f"layer{match.group(1)}.{match.group(2)}.{_BLOCK_NAMES[arch].get(modules[1], modules[1])}.{torch_leaf}"


def _torch_layout(shape: tuple[int, ...], is_kernel: bool) -> tuple[int, ...]:
  """A flax leaf's shape in torch's layout: kernels (*k, I, O) -> (O, I, *k)."""
  return (shape[-1], shape[-2]) + tuple(shape[:-2]) if is_kernel else tuple(shape)


def first_mismatch(state_dict: Mapping[str, Any], target: Mapping[str, Any], *, arch: str,
                   ignore_prefixes: tuple[str, ...] = ("fc.",)) -> str | None:
  """The first way ``state_dict`` fails to fill ``target`` (as :func:`torchvision_to_flax` would), in one line
  with the tensor's name and both shapes in torch's layout; None when they match one-to-one. Checked in order:
  the architecture (the stem's name), each tensor's shape, tensors with no place in the target, leaves of the
  target that no tensor fills. A one-channel first convolution accepts any number of input channels (summed
  or averaged on conversion)."""
  found = detect_arch(state_dict)
  if found != arch:
    what = f"a torchvision {found} state dict ({_STEMS[found]!r})" if found else \
        f"no torchvision r3d_18 / resnet18 state dict (neither 'stem.0.weight' nor 'conv1.weight'; first " \
        f"tensors: {list(state_dict)[:3]})"
    return f"holds {what}, the backbone is a torchvision {arch} ({_STEMS[arch]!r})"
  flat_target = _flat_variables(target)
  unknown, seen = [], set()
  for name, value in state_dict.items():
    if name.startswith(tuple(ignore_prefixes)) or name.endswith(_IGNORED_SUFFIXES):
      continue
    key = _flax_key(name, arch)
    if key is None or key not in flat_target:
      unknown.append(name)
      continue
    seen.add(key)
    expected = _torch_layout(tuple(flat_target[key].shape), key[-1] == "kernel")
    shape = tuple(np.shape(value))
    channels_summed = key[-1] == "kernel" and len(shape) == len(expected) and expected[1] == 1 \
        and shape[:1] + shape[2:] == expected[:1] + expected[2:]
    if shape != expected and not channels_summed:
      return f"tensor {name!r} has shape {shape}, the configured backbone expects {expected}"
  if unknown:
    return (f"tensor {unknown[0]!r} has no place in the configured backbone ({len(unknown)} such tensor"
            f"{'s' * (len(unknown) > 1)}: a deeper or different network than the config's)")
  missing = [key for key in flat_target if key not in seen]
  if missing:
    expected = _torch_layout(tuple(flat_target[missing[0]].shape), missing[0][-1] == "kernel")
    return (f"has no tensor {torch_name(missing[0], arch)!r} of shape {expected} that the configured backbone "
            f"needs ({len(missing)} missing)")
  return None


# ------------------------------------------------------------------------------------------------- command
def sha256(path: str | os.PathLike) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
  """``python -m pkdot_jax.models.convert IN.pth OUT.npz``: a torchvision checkpoint as a torch-free ``.npz``
  with the same tensor names (run once where torch is installed; training then needs no torch)."""
  parser = argparse.ArgumentParser(prog="python -m pkdot_jax.models.convert", description=main.__doc__)
  parser.add_argument("input", help="torchvision state dict (.pth / .pt; read with torch.load(weights_only=True))")
  parser.add_argument("output", help="the .npz to write")
  args = parser.parse_args(argv)
  try:
    if not args.output.endswith(".npz"):
      raise ValueError(f"{args.output}: the output must end in .npz")
    if not os.path.isfile(args.input):
      raise ValueError(f"{args.input}: no such file")
    state = load_state_dict(args.input)
    arch = detect_arch(state)
    if arch is None:
      raise ValueError(f"{args.input}: no torchvision r3d_18 / resnet18 state dict (neither 'stem.0.weight' nor "
                       f"'conv1.weight'; first tensors: {list(state)[:3]})")
  except ValueError as e:
    print(f"convert: error: {e}", file=sys.stderr)
    return 2
  tmp = args.output + ".tmp"
  with open(tmp, "wb") as f:  # written aside, then renamed: an interrupted run leaves no partial .npz
    np.savez(f, **state)
  os.replace(tmp, args.output)
  count = sum(int(np.prod(np.shape(v))) for k, v in state.items() if not k.endswith(_IGNORED_SUFFIXES))
  print(f"{args.output}: torchvision {arch}, {len(state)} tensors, {count:,} numbers, sha256 {sha256(args.output)}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
