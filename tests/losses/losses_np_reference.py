"""Independent float64 NumPy references for the loss tests (written from the papers, not from our JAX code)."""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp


def sq_dist(x, y):
  return ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)


def _c_transform(g, cost, log_b, eps):
  return -eps * logsumexp(log_b[None, :] + (g[None, :] - cost) / eps, axis=1)


def reg_ot(x, y, a, b, eps, tol=1e-12, max_newton=100):
  """OT_eps(a, b) = min <P, C> + eps KL(P | a x b) with C = |x - y|^2 / 2, solved to machine precision.

  Maximises the concave semi-dual F(g) = <a, g^c> + <b, g> (g^c the soft c-transform, so the row marginals of
  P_ij = a_i b_j exp((f_i + g_j - C_ij) / eps) are exact) by Newton's method with backtracking, warm-started by
  epsilon-scaled log-domain Sinkhorn sweeps. Plain Sinkhorn needs 1e5+ iterations on some of our test clouds;
  Newton reaches a column-marginal error < tol in a handful of steps. Returns F at the optimum.
  """
  cost = 0.5 * sq_dist(x, y)
  log_a, log_b = np.log(a), np.log(b)
  g = np.zeros(len(b))
  annealed = max(float(cost.max()), eps)
  while True:  # epsilon scaling: warm start only
    for _ in range(20):
      f = _c_transform(g, cost, log_b, annealed)
      g = -annealed * logsumexp(log_a[:, None] + (f[:, None] - cost) / annealed, axis=0)
    if annealed <= eps:
      break
    annealed = max(0.5 * annealed, eps)

  def objective(g):
    f = _c_transform(g, cost, log_b, eps)
    return a @ f + b @ g, f

  value, f = objective(g)
  for _ in range(max_newton):
    plan = np.exp(log_a[:, None] + log_b[None, :] + (f[:, None] + g[None, :] - cost) / eps)
    col = plan.sum(0)
    grad = b - col
    if np.abs(grad).sum() < tol:
      return value
    hessian = np.diag(col) - plan.T @ (plan / a[:, None])  # PSD, null space = constants
    step = np.linalg.lstsq(hessian, eps * grad, rcond=1e-14)[0]
    t = 1.0
    while True:
      new_value, new_f = objective(g + t * step)
      if new_value >= value - 1e-15 * abs(value) or t < 1e-8:
        break
      t *= 0.5
    g, f, value = g + t * step, new_f, new_value
  raise RuntimeError(f"reference Newton solve did not converge: marginal error {np.abs(grad).sum()}")


def sinkhorn_divergence(x, y, eps, a=None, b=None):
  a = np.full(len(x), 1.0 / len(x)) if a is None else np.asarray(a, np.float64)
  b = np.full(len(y), 1.0 / len(y)) if b is None else np.asarray(b, np.float64)
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  return reg_ot(x, y, a, b, eps) - 0.5 * reg_ot(x, x, a, a, eps) - 0.5 * reg_ot(y, y, b, b, eps)


def cosine(z):
  z = np.asarray(z, np.float64)
  norm = np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-8)
  u = z / norm
  return u @ u.T


def anchors(s_t, k, mode):
  n = len(s_t)
  if mode == "all":
    return np.tile(np.arange(n), (n, 1))
  if mode == "least_similar":
    return np.argsort(s_t, axis=1, kind="stable")[:, :k]
  masked = np.where(np.eye(n, dtype=bool), -np.inf, s_t)
  return np.argsort(-masked, axis=1, kind="stable")[:, :k]


def pkdot(student, teacher, k=30, anchor_mode="least_similar", eps=0.01, shift="min"):
  s_t, s_s = cosine(teacher), cosine(student)
  idx = anchors(s_t, k, anchor_mode)
  if shift == "min":
    t_plus, s_plus = s_t - s_t.min(), s_s - s_s.min()
  else:
    t_plus, s_plus = (s_t + 1) / 2, (s_s + 1) / 2
  cloud_t = np.take_along_axis(t_plus, idx, 1)
  cloud_s = np.take_along_axis(s_plus, idx, 1)
  return sinkhorn_divergence(cloud_s, cloud_t, eps)
