"""Baseline losses against float64 NumPy implementations written from the papers; registry behaviour."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import log_softmax
from scipy.special import softmax

from pkdot_jax import losses

RNG = np.random.default_rng(0)
B, D, DT, C = 6, 5, 7, 4
S_EMB = RNG.normal(size=(B, D))
T_EMB = RNG.normal(size=(B, D))
T_EMB_WIDE = RNG.normal(size=(B, DT))
S_LOGITS = 2.0 * RNG.normal(size=(B, C))
T_LOGITS = 2.0 * RNG.normal(size=(B, C))
LABELS = np.array([0, 1, 2, 3, 1, 0])
S_MAPS = RNG.normal(size=(B, 3, 2, 4))  # channels-last (B, H, W, C_s)
T_MAPS = RNG.normal(size=(B, 3, 2, 6))


def f32(x):
  return jnp.asarray(x, jnp.float32)


def unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


# --------------------------------------------------------------------------- NumPy references (float64)


def np_hinton(s, t, temp):
  p = softmax(t / temp, -1)
  return temp**2 * np.mean(np.sum(p * (np.log(p) - log_softmax(s / temp, -1)), -1))


def np_dkd(s, t, y, alpha, beta, temp):
  total = 0.0
  for i in range(len(y)):
    ps, pt = softmax(s[i] / temp), softmax(t[i] / temp)
    bs, bt = np.array([ps[y[i]], 1 - ps[y[i]]]), np.array([pt[y[i]], 1 - pt[y[i]]])
    tckd = np.sum(bt * np.log(bt / bs))
    keep = np.arange(len(ps)) != y[i]
    qs, qt = softmax(s[i][keep] / temp), softmax(t[i][keep] / temp)
    nckd = np.sum(qt * np.log(qt / qs))
    total += alpha * tckd + beta * nckd
  return temp**2 * total / len(y)


def np_gd(s, t, y, lam, temp):
  log_ps = log_softmax(s, -1)
  soft = softmax(t / temp, -1)
  hard = -log_ps[np.arange(len(y)), y]
  return np.mean((1 - lam) * hard + lam * -np.sum(soft * log_ps, -1))


def np_pkt(s, t):
  def cond(x):
    k = 0.5 * (unit(x) @ unit(x).T + 1)
    np.fill_diagonal(k, 0)
    return k / k.sum(1, keepdims=True)
  ps, pt = cond(s), cond(t)
  mask = ~np.eye(len(s), dtype=bool)
  return np.sum(pt[mask] * np.log(pt[mask] / ps[mask]))


def np_huber(x):
  return np.where(np.abs(x) < 1, 0.5 * x**2, np.abs(x) - 0.5)


def np_rkd(s, t, wd, wa):
  def dist(x):
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    n = len(x)
    return d / (d.sum() / (n * (n - 1)))
  def angle(x):
    n = len(x)
    out = np.zeros((n, n, n))
    for i in range(n):
      for j in range(n):
        for k in range(n):
          if i != j and k != j:
            e1, e2 = x[i] - x[j], x[k] - x[j]
            out[i, j, k] = e1 @ e2 / (np.linalg.norm(e1) * np.linalg.norm(e2))
    return out
  return wd * np.mean(np_huber(dist(s) - dist(t))) + wa * np.mean(np_huber(angle(s) - angle(t)))


def np_sp(s, t):
  def g(x):
    x = x.reshape(len(x), -1)
    gram = x @ x.T
    return gram / np.linalg.norm(gram, axis=1, keepdims=True)
  return np.sum((g(s) - g(t)) ** 2) / len(s) ** 2


def np_cc(s, t, kernel, gamma=0.4, order=2):
  def corr(x):
    u = unit(x)
    if kernel == "bilinear":
      return u @ u.T
    if kernel == "gaussian":
      return np.exp(-gamma * ((u[:, None] - u[None]) ** 2).sum(-1))
    inner = u @ u.T
    return sum(math.exp(-2 * gamma) * (2 * gamma) ** p / math.factorial(p) * inner**p for p in range(order + 1))
  return np.sum((corr(t) - corr(s)) ** 2) / len(s) ** 2


def np_mmd2(x, y, kernel):
  return kernel(x, x).mean() + kernel(y, y).mean() - 2 * kernel(x, y).mean()


def np_nst(s, t):
  total = 0.0
  for i in range(len(s)):
    fs = unit(s[i].reshape(-1, s.shape[-1]).T)  # (C_s, HW)
    ft = unit(t[i].reshape(-1, t.shape[-1]).T)
    total += np_mmd2(fs, ft, lambda a, b: (a @ b.T) ** 2)
  return total / len(s)


def np_mmd(s, t, bandwidths):
  def kernel(a, b):
    d = ((a[:, None] - b[None]) ** 2).sum(-1)
    return sum(np.exp(-d / bw) for bw in bandwidths)
  return np_mmd2(s, t, kernel)


def np_dan_bandwidths(s, t, mul=2.0, num=5):
  z = np.concatenate([s, t])
  d = ((z[:, None] - z[None]) ** 2).sum(-1)
  n = len(z)
  base = d.sum() / (n * n - n)
  return [base * mul ** (i - num // 2) for i in range(num)]


CASES = [
    ("hinton_kd", lambda: losses.hinton_kd(f32(S_LOGITS), f32(T_LOGITS), temperature=3.0),
     lambda: np_hinton(S_LOGITS, T_LOGITS, 3.0)),
    ("dkd", lambda: losses.dkd(f32(S_LOGITS), f32(T_LOGITS), LABELS, alpha=1.0, beta=8.0, temperature=4.0),
     lambda: np_dkd(S_LOGITS, T_LOGITS, LABELS, 1.0, 8.0, 4.0)),
    ("generalized_distillation",
     lambda: losses.generalized_distillation(f32(S_LOGITS), f32(T_LOGITS), LABELS, imitation=0.3, temperature=2.0),
     lambda: np_gd(S_LOGITS, T_LOGITS, LABELS, 0.3, 2.0)),
    ("fitnets", lambda: losses.fitnets(f32(S_EMB), f32(T_EMB)),
     lambda: 0.5 * np.mean(np.sum((S_EMB - T_EMB) ** 2, 1))),
    ("feature_mse", lambda: losses.feature_mse(f32(S_MAPS[..., :4]), f32(T_MAPS[..., :4])),
     lambda: np.mean((S_MAPS[..., :4] - T_MAPS[..., :4]) ** 2)),
    ("mars", lambda: losses.mars(f32(S_EMB), f32(T_EMB)), lambda: np.mean(np.sum((S_EMB - T_EMB) ** 2, 1))),
    ("privileged_cosine", lambda: losses.privileged_cosine(f32(S_EMB), f32(T_EMB)),
     lambda: 1 - np.sum(S_EMB * T_EMB) / (np.linalg.norm(S_EMB) * np.linalg.norm(T_EMB))),
    ("pkt", lambda: losses.pkt(f32(S_EMB), f32(T_EMB_WIDE)), lambda: np_pkt(S_EMB, T_EMB_WIDE)),
    ("pkt_mean", lambda: losses.pkt(f32(S_EMB), f32(T_EMB_WIDE), reduction="mean"),
     lambda: np_pkt(S_EMB, T_EMB_WIDE) / B),
    ("rkd", lambda: losses.rkd(f32(S_EMB), f32(T_EMB_WIDE), distance_weight=25.0, angle_weight=50.0),
     lambda: np_rkd(S_EMB, T_EMB_WIDE, 25.0, 50.0)),
    ("rkd_distance_only", lambda: losses.rkd(f32(S_EMB), f32(T_EMB_WIDE), angle_weight=0.0),
     lambda: np_rkd(S_EMB, T_EMB_WIDE, 25.0, 0.0)),
    ("sp", lambda: losses.sp(f32(S_MAPS), f32(T_MAPS)), lambda: np_sp(S_MAPS, T_MAPS)),
    ("cc", lambda: losses.cc(f32(S_EMB), f32(T_EMB_WIDE)), lambda: np_cc(S_EMB, T_EMB_WIDE, "gaussian_taylor")),
    ("cc_gaussian", lambda: losses.cc(f32(S_EMB), f32(T_EMB_WIDE), kernel="gaussian"),
     lambda: np_cc(S_EMB, T_EMB_WIDE, "gaussian")),
    ("cc_bilinear", lambda: losses.cc(f32(S_EMB), f32(T_EMB_WIDE), kernel="bilinear"),
     lambda: np_cc(S_EMB, T_EMB_WIDE, "bilinear")),
    ("nst", lambda: losses.nst(f32(S_MAPS), f32(T_MAPS)), lambda: np_nst(S_MAPS, T_MAPS)),
    ("mmd", lambda: losses.mmd(f32(S_EMB), f32(T_EMB)),
     lambda: np_mmd(S_EMB, T_EMB, np_dan_bandwidths(S_EMB, T_EMB))),
    ("mmd_explicit", lambda: losses.mmd(f32(S_EMB), f32(T_EMB), bandwidths=(1.0, 4.0)),
     lambda: np_mmd(S_EMB, T_EMB, (1.0, 4.0))),
]


@pytest.mark.parametrize("name,ours,reference", CASES, ids=[c[0] for c in CASES])
def test_golden_values(name, ours, reference):
  value = ours()
  expected = reference()
  assert value.shape == () and value.dtype == jnp.float32
  np.testing.assert_allclose(float(value), expected, rtol=2e-5, atol=1e-6)
  assert abs(expected) > 1e-3, f"{name}: the reference case is degenerate"


# Gradients: float64 JAX gradient vs central differences of the float64 NumPy reference.
GRAD_CASES = {
    "pkt": (lambda s: losses.pkt(s, jnp.asarray(T_EMB_WIDE)), lambda s: np_pkt(s, T_EMB_WIDE)),
    "rkd": (lambda s: losses.rkd(s, jnp.asarray(T_EMB_WIDE)), lambda s: np_rkd(s, T_EMB_WIDE, 25.0, 50.0)),
    "cc": (lambda s: losses.cc(s, jnp.asarray(T_EMB_WIDE)), lambda s: np_cc(s, T_EMB_WIDE, "gaussian_taylor")),
    "mmd": (lambda s: losses.mmd(s, jnp.asarray(T_EMB), bandwidths=(1.0, 4.0)),
            lambda s: np_mmd(s, T_EMB, (1.0, 4.0))),
    "privileged_cosine": (lambda s: losses.privileged_cosine(s, jnp.asarray(T_EMB)),
                          lambda s: 1 - np.sum(s * T_EMB) / (np.linalg.norm(s) * np.linalg.norm(T_EMB))),
}


@pytest.mark.parametrize("name", sorted(GRAD_CASES))
def test_gradients_match_central_differences(name):
  ours, reference = GRAD_CASES[name]
  with jax.enable_x64(True):
    grad = np.asarray(jax.grad(ours)(jnp.asarray(S_EMB, jnp.float64)))
  direction = np.random.default_rng(1).normal(size=S_EMB.shape)
  h = 1e-6
  fd = (reference(S_EMB + h * direction) - reference(S_EMB - h * direction)) / (2 * h)
  np.testing.assert_allclose(np.sum(grad * direction), fd, rtol=1e-5, atol=1e-8)


def test_logit_gradients_match_central_differences():
  with jax.enable_x64(True):
    grad = np.asarray(jax.grad(lambda s: losses.dkd(s, jnp.asarray(T_LOGITS), LABELS))(jnp.asarray(S_LOGITS)))
  direction = np.random.default_rng(2).normal(size=S_LOGITS.shape)
  h = 1e-6
  fd = (np_dkd(S_LOGITS + h * direction, T_LOGITS, LABELS, 1, 8, 4)
        - np_dkd(S_LOGITS - h * direction, T_LOGITS, LABELS, 1, 8, 4)) / (2 * h)
  np.testing.assert_allclose(np.sum(grad * direction), fd, rtol=1e-5)


def test_properties():
  s, t = f32(S_EMB), f32(T_EMB)
  # Identical inputs give zero for the divergence-like losses.
  for name in ("pkt", "rkd", "sp", "cc", "mmd", "fitnets", "feature_mse", "mars", "privileged_cosine"):
    assert abs(float(losses.get(name)(t, t))) < 1e-5, name
  assert abs(float(losses.hinton_kd(f32(T_LOGITS), f32(T_LOGITS)))) < 1e-5
  assert abs(float(losses.dkd(f32(T_LOGITS), f32(T_LOGITS), LABELS))) < 1e-5
  assert abs(float(losses.nst(f32(T_MAPS), f32(T_MAPS)))) < 1e-5
  # Teacher gets no gradient from any baseline.
  for name in ("pkt", "rkd", "sp", "cc", "mmd", "fitnets", "mars", "privileged_cosine"):
    grad_t = jax.grad(lambda t: losses.get(name)(s, t))(t)
    assert not np.any(np.asarray(grad_t)), name
  grad_t = jax.grad(lambda t: losses.dkd(f32(S_LOGITS), t, LABELS))(f32(T_LOGITS))
  assert not np.any(np.asarray(grad_t))
  # Generalized distillation with imitation 0 is cross-entropy on the labels.
  ce = -np.mean(log_softmax(S_LOGITS, -1)[np.arange(B), LABELS])
  np.testing.assert_allclose(losses.generalized_distillation(f32(S_LOGITS), f32(T_LOGITS), LABELS, imitation=0.0),
                             ce, rtol=1e-5)
  # Zero vectors and duplicated samples: finite values and gradients.
  s_bad = s.at[0].set(0.0).at[2].set(s[1])
  for name in ("pkt", "rkd", "sp", "cc", "mmd", "privileged_cosine"):
    value, grad = jax.value_and_grad(lambda s: losses.get(name)(s, t))(s_bad)
    assert np.isfinite(float(value)) and np.all(np.isfinite(np.asarray(grad))), name
  # NaN propagates.
  for name in ("pkt", "rkd", "sp", "cc", "mmd", "fitnets", "privileged_cosine"):
    assert np.isnan(float(losses.get(name)(s.at[0, 0].set(jnp.nan), t))), name


def test_bad_inputs():
  s, t = f32(S_EMB), f32(T_EMB)
  with pytest.raises(ValueError, match=r"batch size.*\(6, 5\).*\(5, 5\)"):
    losses.rkd(s, t[:5])
  with pytest.raises(ValueError, match=r"same shape.*\(6, 5\).*\(6, 7\)"):
    losses.fitnets(s, f32(T_EMB_WIDE))
  with pytest.raises(ValueError, match=r"student must be a 2-D.*\(6, 5, 1\)"):
    losses.pkt(s[..., None], t)
  with pytest.raises(ValueError, match=r"labels must be a \(6,\)"):
    losses.dkd(f32(S_LOGITS), f32(T_LOGITS), LABELS[:5])
  with pytest.raises(ValueError, match="integer"):
    losses.dkd(f32(S_LOGITS), f32(T_LOGITS), LABELS.astype(np.float32))
  with pytest.raises(ValueError, match="imitation"):
    losses.generalized_distillation(f32(S_LOGITS), f32(T_LOGITS), LABELS, imitation=1.5)
  with pytest.raises(ValueError, match=r"spatial shape"):
    losses.nst(f32(S_MAPS), f32(T_MAPS[:, :2]))
  with pytest.raises(ValueError, match=r"at least 3"):
    losses.nst(s, t)
  with pytest.raises(ValueError, match="kernel"):
    losses.cc(s, t, kernel="rbf")
  with pytest.raises(ValueError, match="bandwidths"):
    losses.mmd(s, t, bandwidths=(1.0, -1.0))
  with pytest.raises(ValueError, match="reduction"):
    losses.pkt(s, t, reduction="batchmean")


def test_registry():
  names = losses.available()
  assert names == sorted(names)
  expected = {"pkdot", "hinton_kd", "dkd", "generalized_distillation", "fitnets", "feature_mse", "mars",
              "privileged_cosine", "pkt", "rkd", "sp", "cc", "mmd", "nst"}
  assert set(names) == expected
  assert losses.get("pkdot") is losses.pkdot
  assert losses.get("rkd") is losses.rkd
  spec = losses.spec("dkd")
  assert spec.needs_labels and spec.inputs == "logits" and spec.fn is losses.dkd
  assert losses.spec("pkdot").inputs == "embeddings" and not losses.spec("pkdot").same_dim
  assert losses.spec("nst").inputs == "feature_maps"
  for name in names:
    spec = losses.spec(name)
    assert spec.name == name and spec.inputs in ("embeddings", "logits", "feature_maps")
  with pytest.raises(ValueError, match=r"Unknown loss name 'rdk'.*pkdot.*rkd"):
    losses.get("rdk")
  with pytest.raises(ValueError, match="valid names"):
    losses.spec("PKDOT")
