"""PyTorch reference for the benchmarks: the authors' PKDOT loss (geomloss) and their student step, timed.

What the authors' released code computes, rebuilt with torch, torchvision and geomloss so that the JAX figures
of `loss_bench.py` and `step_bench.py` have a baseline measured on the same card in the same call:

  loss_fwd_bwd   the PKDOT loss forward + backward: cosine similarities, min shift, k = 30 least-similar anchors
                 chosen on the teacher, `geomloss.SamplesLoss("sinkhorn", p=2, blur=0.1)` with geomloss's
                 defaults (epsilon annealing, scaling 0.5, not run to convergence), B = 128 ... 8192.
  student_step   one optimizer step of the distillation stage at B = 128, 10 x 112 x 112 clips: the frozen
                 teacher's forward (R3D-18 video + ResNet-18 on a 65 x 85 log spectrogram + gated cross-attention
                 fusion), the student's R3D-18, the frozen T-Net, the same fusion, cross-entropy + 0.6 x PKDOT,
                 Adam 1e-4; timed with and without the OT term. Three variants:
                   reference_frozen_backbone    the authors' setup: student backbone frozen, fp32
                   finetune                     the student backbone trained too, fp32
                   finetune+bf16+channels_last  the same under bf16 autocast, clips and 3-D nets channels_last_3d

The backbones are torchvision's `r3d_18` and `resnet18` (one input channel), without their classifiers and with
random weights. The fusion keeps the authors' tensor layout: (B, 1, D) into sequence-first layers, so its
self-attention runs across the batch and its cross-attention sees one token; this is their cost, not our model
(ours is per-sample, see docs/design.md). Their frozen random 512 -> 512 projection after the student backbone is
left out (one 512 x 512 matrix product per step).

Prints one JSON object per line, read by `python -m experiments.bench.table --anchor FILE`:
  {"what": "env", ...}                                          versions, device, parameter counts
  {"what": "loss_fwd_bwd", "B", "k", "ms", "value", ...}        or {..., "error": ...} (out of memory)
  {"what": "student_step", "variant", "B", "T", "H", "ms", "clips_per_s", "ms_without_ot", "ot_overhead", ...}

  python experiments/bench/torch_reference.py             # full sizes (a GPU; about 2 minutes on one)
  python experiments/bench/torch_reference.py --tiny      # CPU smoke check: small shapes, few repeats
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

STEP_VARIANTS = ("reference_frozen_backbone", "finetune", "finetune+bf16+channels_last")
DISTILL_WEIGHT = 0.6     # the paper's lambda
SPECTROGRAM_SHAPE = (65, 85)  # 2816 samples at 512 Hz, 128-sample frames, hop 32: what step_bench feeds the teacher


def _emit(device: torch.device, **row) -> None:
  row["device"] = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
  print(json.dumps(row), flush=True)


def _sync(device: torch.device) -> None:
  if device.type == "cuda":
    torch.cuda.synchronize(device)


def time_ms(fn, device: torch.device, *, warmup: int, repeats: int) -> dict[str, float]:
  """Median, 10th and 90th percentile wall time of `fn()` in ms, each call followed by a device sync."""
  for _ in range(warmup):
    fn()
  _sync(device)
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    _sync(device)
    times.append(1e3 * (time.perf_counter() - start))
  times.sort()
  return {"ms": statistics.median(times), "ms_p10": times[int(0.1 * (len(times) - 1))],
          "ms_p90": times[int(round(0.9 * (len(times) - 1)))]}


def sinkhorn_loss():
  """The authors' OT loss object: geomloss's debiased Sinkhorn divergence, blur 0.1 (eps = 0.01), defaults."""
  from geomloss import SamplesLoss  # pylint: disable=import-outside-toplevel
  return SamplesLoss("sinkhorn", p=2, blur=0.1, backend="tensorized")


def pkdot_geomloss(student: torch.Tensor, teacher: torch.Tensor, k: int, divergence) -> torch.Tensor:
  """PKDOT as the authors' code computes it: (B, D) embeddings -> scalar loss."""
  def cosine(z):
    unit = F.normalize(z, dim=1)
    return unit @ unit.T

  teacher_similarity, student_similarity = cosine(teacher), cosine(student)
  # Anchors: per row the k least similar samples on the teacher's unshifted similarities.
  anchors = torch.topk(teacher_similarity, k, dim=1, largest=False).indices
  teacher_cloud = (teacher_similarity - teacher_similarity.min()).gather(1, anchors)
  student_cloud = (student_similarity - student_similarity.min()).gather(1, anchors)
  return divergence(student_cloud, teacher_cloud)


def embeddings(batch: int, dim: int = 512, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """(student, teacher): ReLU-like teacher rows and a noisy copy as student, the inputs loss_bench draws."""
  rng = np.random.default_rng(seed)
  teacher = np.maximum(rng.normal(size=(batch, dim)), 0.0)
  student = np.maximum(teacher + 0.5 * rng.normal(size=(batch, dim)), 0.0)
  return student.astype(np.float32), teacher.astype(np.float32)


def bench_loss(device: torch.device, batch_sizes, *, k: int, warmup: int, repeats: int) -> None:
  divergence = sinkhorn_loss()
  for batch in batch_sizes:
    student_np, teacher_np = embeddings(batch)
    teacher = torch.from_numpy(teacher_np).to(device)
    student = torch.from_numpy(student_np).to(device).requires_grad_(True)

    def forward_backward():
      student.grad = None
      pkdot_geomloss(student, teacher, k, divergence).backward()

    try:
      with torch.no_grad():
        value = float(pkdot_geomloss(student, teacher, k, divergence))
      timing = time_ms(forward_backward, device, warmup=warmup, repeats=repeats)
      _emit(device, what="loss_fwd_bwd", impl="torch+geomloss(tensorized, scaling=0.5)", B=batch, k=k,
            repeats=repeats, value=value, **{key: round(v, 3) for key, v in timing.items()})
    except (RuntimeError, MemoryError) as error:  # out of memory at large B
      _emit(device, what="loss_fwd_bwd", impl="torch+geomloss", B=batch, k=k, error=str(error)[:200])
    del teacher, student
    if device.type == "cuda":
      torch.cuda.empty_cache()


# ---- the student step ----------------------------------------------------------------------------------------

def video_backbone() -> nn.Module:
  """torchvision's R3D-18, classifier removed: (B, 3, T, H, W) -> (B, 512); 33,166,272 parameters."""
  from torchvision.models.video import r3d_18  # pylint: disable=import-outside-toplevel
  net = r3d_18(weights=None)
  net.fc = nn.Identity()
  return net


def physio_backbone() -> nn.Module:
  """torchvision's ResNet-18 on a one-channel spectrogram, classifier removed; 11,170,240 parameters."""
  from torchvision.models import resnet18  # pylint: disable=import-outside-toplevel
  net = resnet18(weights=None)
  net.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
  net.fc = nn.Identity()
  return net


class AuthorsGatedFusion(nn.Module):
  """Gated cross-attention fusion in the authors' layout: returns (logits, fused embedding), both per sample.

  Each modality passes a post-norm transformer layer (2 heads, feed-forward width = model width), then each
  attends to the other and a sigmoid gate mixes the two. The embeddings enter as (B, 1, D) sequence-first, as in
  their code: the transformer layers attend over the batch, the cross-attentions over one token.
  """

  def __init__(self, dim: int = 512, heads: int = 2, classes: int = 2):
    super().__init__()
    self.visual_encoder = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=dim, dropout=0.0)
    self.privileged_encoder = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=dim, dropout=0.0)
    self.visual_from_privileged = nn.MultiheadAttention(dim, heads)
    self.privileged_from_visual = nn.MultiheadAttention(dim, heads)
    self.gate = nn.Linear(2 * dim, 1)
    self.head = nn.Linear(dim, classes)

  def forward(self, visual: torch.Tensor, privileged: torch.Tensor):
    visual = self.visual_encoder(visual[:, None]).transpose(0, 1)            # (1, B, D)
    privileged = self.privileged_encoder(privileged[:, None]).transpose(0, 1)
    attended_visual = self.visual_from_privileged(privileged, visual, visual, need_weights=False)[0]
    attended_privileged = self.privileged_from_visual(visual, privileged, privileged, need_weights=False)[0]
    gate = torch.sigmoid(self.gate(torch.cat([attended_visual, attended_privileged], dim=-1)))
    fused = (gate * attended_visual + (1.0 - gate) * attended_privileged)[0]  # (B, D)
    return self.head(fused), fused


def tnet() -> nn.Module:
  """The T-Net, 512-256-128-256-512 (frozen in the authors' step)."""
  widths = (512, 256, 128, 256, 512)
  layers: list[nn.Module] = []
  for i, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:])):
    layers.append(nn.Linear(width_in, width_out))
    layers.append(nn.ReLU() if i < len(widths) - 2 else nn.Sigmoid())
  return nn.Sequential(*layers)


def _frozen(module: nn.Module, device: torch.device) -> nn.Module:
  return module.to(device).eval().requires_grad_(False)


def bench_step(device: torch.device, variant: str, *, batch: int, frames: int, size: int, k: int, warmup: int,
               repeats: int) -> None:
  frozen_backbone = variant == "reference_frozen_backbone"
  bf16 = variant == "finetune+bf16+channels_last"
  torch.manual_seed(0)
  teacher_video, teacher_physio = _frozen(video_backbone(), device), _frozen(physio_backbone(), device)
  teacher_fusion = _frozen(AuthorsGatedFusion(), device)
  student_video, student_fusion = video_backbone().to(device), AuthorsGatedFusion().to(device)
  student_tnet = _frozen(tnet(), device)
  clips = torch.randn(batch, 3, frames, size, size, device=device)
  spectrogram = torch.randn(batch, 1, *SPECTROGRAM_SHAPE, device=device)
  labels = torch.randint(0, 2, (batch,), device=device)
  if bf16:
    clips = clips.contiguous(memory_format=torch.channels_last_3d)
    teacher_video = teacher_video.to(memory_format=torch.channels_last_3d)
    student_video = student_video.to(memory_format=torch.channels_last_3d)
  if frozen_backbone:
    student_video = _frozen(student_video, device)
  trained = list(student_fusion.parameters()) + ([] if frozen_backbone else list(student_video.parameters()))
  optimizer = torch.optim.Adam(trained, lr=1e-4)
  divergence = sinkhorn_loss()

  def step(with_ot: bool) -> None:
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
      with torch.no_grad():
        _, teacher_embedding = teacher_fusion(teacher_video(clips), teacher_physio(spectrogram))
      visual = student_video(clips)
      with torch.no_grad():
        hallucinated = student_tnet(visual)
      logits, student_embedding = student_fusion(visual, hallucinated)
      loss = F.cross_entropy(logits.float(), labels)
    if with_ot:  # the OT loss in float32, outside autocast, as geomloss expects
      loss = loss + DISTILL_WEIGHT * pkdot_geomloss(student_embedding.float(), teacher_embedding.float(), k,
                                                    divergence)
    loss.backward()
    optimizer.step()

  try:
    with_ot = time_ms(lambda: step(True), device, warmup=warmup, repeats=repeats)
    without_ot = time_ms(lambda: step(False), device, warmup=warmup, repeats=repeats)
    seconds = with_ot["ms"] / 1e3
    _emit(device, what="student_step", impl="torch", variant=variant, dtype="bfloat16" if bf16 else "float32",
          B=batch, T=frames, H=size, k=k, repeats=repeats, ms=round(with_ot["ms"], 2),
          ms_p10=round(with_ot["ms_p10"], 2), ms_p90=round(with_ot["ms_p90"], 2),
          clips_per_s=round(batch / seconds, 1), ms_without_ot=round(without_ot["ms"], 2),
          ot_overhead=round((with_ot["ms"] - without_ot["ms"]) / without_ot["ms"], 4),
          peak_bytes=torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None)
  except (RuntimeError, MemoryError) as error:
    _emit(device, what="student_step", impl="torch", variant=variant, B=batch, error=str(error)[:300])
  del teacher_video, teacher_physio, teacher_fusion, student_video, student_fusion, optimizer
  if device.type == "cuda":
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)


def _version(package: str) -> str | None:
  try:
    return importlib.metadata.version(package)
  except importlib.metadata.PackageNotFoundError:
    return None


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--tiny", action="store_true",
                      help="CPU smoke check: loss B 128 and 256, step B 8 of 4 x 16 x 16 clips, 1 + 2 repeats")
  parser.add_argument("--batch_sizes", type=int, nargs="+", help="loss rows (default 128 512 2048 8192)")
  parser.add_argument("--k", type=int, default=30)
  parser.add_argument("--variants", nargs="+", choices=STEP_VARIANTS, default=list(STEP_VARIANTS))
  parser.add_argument("--skip_loss", action="store_true")
  parser.add_argument("--skip_step", action="store_true")
  args = parser.parse_args(argv)

  device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
  torch.backends.cudnn.benchmark = True
  if args.tiny:
    batch_sizes, loss_repeats = args.batch_sizes or [128, 256], 3
    batch, frames, size, warmup, repeats = 8, 4, 16, 1, 2
  else:
    batch_sizes, loss_repeats = args.batch_sizes or [128, 512, 2048, 8192], 10
    batch, frames, size, warmup, repeats = 128, 10, 112, 3, 10
  _emit(device, what="env", torch=torch.__version__, torchvision=_version("torchvision"),
        geomloss=_version("geomloss"), cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
        threads=torch.get_num_threads(),
        video_backbone_params=sum(p.numel() for p in video_backbone().parameters()),
        physio_backbone_params=sum(p.numel() for p in physio_backbone().parameters()))
  if not args.skip_loss:
    bench_loss(device, batch_sizes, k=args.k, warmup=2, repeats=loss_repeats)
  if not args.skip_step:
    for variant in args.variants:
      bench_step(device, variant, batch=batch, frames=frames, size=size, k=min(args.k, batch - 1),
                 warmup=warmup, repeats=repeats)


if __name__ == "__main__":
  main()
