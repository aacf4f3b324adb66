"""Dense contrastive learning with optimal-transport patch matching (DenseCL, Wang et al. 2021; Berg 2024,
seed 000 §3.3, eq. 3.18–3.24).

Inputs are the dense projections f (N, P, d) of the P = h·w patches of each view and the global projections
g (N, d); everything is L2-normalised here. For image i the patches of view A are matched to those of view B by a
plan π_i (P × P) computed **without gradient** from the cosine cost C_jk = 1 − sim(f^A_ij, f^B_ik) ∈ [0, 2], with
uniform marginals 1/P. Eq. 3.21 writes C = −sim; the shift by 1 changes no balanced plan (a constant cost moves
only the potentials) but unbalanced OT needs a non-negative cost: with −sim, moving mass *earns* reg_m-weighted
credit, so plans create mass instead of dropping it (total mass 5.5 at ε = reg_m = 0.1).

- ``"argmax"``: DenseCL, t⁺(j) = argmax_k sim (eq. 3.18), the plan puts 1/P on (j, t⁺(j));
- ``"exact"``: exact OT (eq. 3.22), the plan of ``ot.emd``, computed as the linear assignment it reduces to for
  uniform marginals of equal size (``scipy.optimize.linear_sum_assignment``; tested equal to ``ot.emd``);
- ``"entropic"``: the plan of ``ot.sinkhorn`` with regularisation ε (10 or 1000 in Table 3.5; default 10),
  computed for the whole batch at once by POT's ``ot.solve_batch`` (tested equal to ``ot.sinkhorn``);
- ``"unbalanced"``: ``ot.unbalanced.sinkhorn_unbalanced`` (KL-relaxed marginals, Chizat et al. 2018; seed 000
  eq. 2.30) with entropic ε and marginal relaxation ``reg_m``, so that a patch with no counterpart in the other
  view is left (mostly) unmatched (§3.3.2, Fig. 3.6). For small ε a row keeps about exp(−c/(2·reg_m)) of its
  mass, c its cheapest cost: the defaults ε = 0.01, reg_m = 0.3 keep ≈ 0.9 of a near copy's row (cosine 0.97),
  ≈ 0.8 at cosine 0.9, and ≈ 0.2 of an unrelated patch's (cosine ≈ 0) (tested). Table 3.5's λ = 0.05 was
  meant for the cost −sim; on 1 − sim it keeps only ≈ 0.6 of a near copy's row at ε = 0.01, and at the old
  ε = 10 the entropic term swamps the cost (every row keeps ≈ 1 of its mass, and the argmax is DenseCL's);
- ``"uniform"``: π_jk = 1/P² (Table 3.5 "Uniform"); its argmax is arbitrary, so it is always used soft.

Weights W_jk: hard = one-hot of argmax_k π_jk (eq. 3.23) times the row's mass P·Σ_k π_jk (1 for balanced plans,
so exactly eq. 3.23; for unbalanced ones it keeps the point of the relaxation: an unmatched patch weighs little,
our reading of §3.3.2 "to not have as much impact in the dense contrastive loss"); soft = P·π_jk (eq. 3.24; rows
sum to 1 for balanced plans, to less for unbalanced ones). With s_jk = sim(f^A_ij, f^B_ik)/τ and negatives n_l (the
dense key queue when given, else the pooled dense view-B features of the other images of the batch, eq. 3.19
"image-level representation of sample k"), each candidate gives the InfoNCE term
ℓ_jk = −log( e^{s_jk} / (e^{s_jk} + Σ_l e^{sim(f^A_ij, n_l)/τ}) ) and
``L_dense = mean_{i,j} Σ_k W_ijk ℓ_ijk``. The global term is InfoNCE between g_A and g_B (eq. 3.20; against the
global queue when given). ``L = (L_global + L_dense) / 2`` (equal weights, DenseCL's λ = 0.5).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F

from ._util import full, no_autocast
from .contrastive import moco_infonce

MATCHINGS = ("argmax", "exact", "entropic", "unbalanced", "uniform")
ENTROPIC_EPS = 10.0  # seed 000 Table 3.5 (10 or 1000)
UNBALANCED_EPS, UNBALANCED_REG_M = 0.01, 0.3  # see the module docstring: unrelated patches lose most of their mass


@torch.no_grad()
@no_autocast
def match_plans(f_a: torch.Tensor, f_b: torch.Tensor, matching: str = "argmax", eps: float | None = None,
                reg_m: float | None = None) -> torch.Tensor:
    """(N, P, P) plans π_i between the patches of view A and view B of each image (no gradient); see the
    module docstring. ``eps`` defaults to :data:`ENTROPIC_EPS` (entropic) or :data:`UNBALANCED_EPS`
    (unbalanced), ``reg_m`` to :data:`UNBALANCED_REG_M`. Exact and unbalanced matchings run on float64 NumPy
    copies on the CPU; the entropic one on the features' device."""
    if matching not in MATCHINGS:
        raise ValueError(f"dense matching must be one of {MATCHINGS}, got {matching!r}")
    a = F.normalize(full(f_a.detach()), dim=-1)
    b = F.normalize(full(f_b.detach()), dim=-1)
    n, p, _ = a.shape
    sim = a @ b.transpose(1, 2)  # (N, P, P)
    if matching == "uniform":
        return torch.full_like(sim, 1.0 / (p * p))
    if matching == "argmax":
        plans = torch.zeros_like(sim)
        plans.scatter_(2, sim.argmax(dim=2, keepdim=True), 1.0 / p)
        return plans
    if matching == "exact":
        # Between two uniform measures of P atoms each, exact OT is attained at a permutation matrix / P
        # (Birkhoff-von Neumann), i.e. the linear assignment problem: scipy's solver gives the plan of ot.emd
        # (tested) about 5x faster, and needs no POT.
        from scipy.optimize import linear_sum_assignment

        cost = (1.0 - sim).double().cpu().numpy()
        out = np.zeros_like(cost)
        for i in range(n):
            rows, cols = linear_sum_assignment(cost[i])
            out[i, rows, cols] = 1.0 / p
        return torch.from_numpy(out).to(dtype=sim.dtype, device=sim.device)
    import ot  # the entropic and unbalanced matchings need POT

    if matching == "entropic":
        # POT's batched entropic solver (log-domain Sinkhorn on all N problems at once, on sim's device)
        res = ot.solve_batch(1.0 - sim.double(), reg=ENTROPIC_EPS if eps is None else eps, max_iter=10000,
                             tol=1e-12)
        return res.plan.to(sim.dtype)
    eps = UNBALANCED_EPS if eps is None else eps
    reg_m = UNBALANCED_REG_M if reg_m is None else reg_m
    cost = (1.0 - sim).double().cpu().numpy()
    marg = np.full(p, 1.0 / p)
    out = np.empty_like(cost)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # POT's convergence warnings are expected and harmless here
        for i in range(n):
            out[i] = ot.unbalanced.sinkhorn_unbalanced(marg, marg, cost[i], reg=eps, reg_m=reg_m)
    return torch.from_numpy(out).to(dtype=sim.dtype, device=sim.device)


def match_weights(plans: torch.Tensor, matching: str, soft: bool) -> torch.Tensor:
    """Weights W of the dense term: P·π when soft (and always for "uniform"), else one-hot of the row argmax,
    times the row's mass P·Σ_k π_jk for unbalanced plans (balanced rows all hold 1/P)."""
    p = plans.shape[-1]
    if soft or matching == "uniform":
        return plans * p
    w = torch.zeros_like(plans)
    w.scatter_(2, plans.argmax(dim=2, keepdim=True), 1.0)
    return w * (p * plans.sum(2, keepdim=True)) if matching == "unbalanced" else w


@no_autocast
def dense_contrastive(f_a: torch.Tensor, f_b: torch.Tensor, g_a: torch.Tensor, g_b: torch.Tensor,
                      matching: str = "argmax", soft: bool = False, eps: float | None = None,
                      reg_m: float | None = None,
                      temperature: float = 0.2,
                      queue: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """DenseCL / dense OT contrastive loss ``(L_global + L_dense) / 2`` (seed 000 eq. 3.19–3.20, 3.24).

    f_a, f_b: (N, P, d) dense projections of the two views (view B usually from the momentum encoder);
    g_a, g_b: (N, d) global projections; queue: None (in-batch negatives) or (global key queue (K, d), dense key
    queue (K', d)), as DenseCL's two queues.
    """
    if f_a.ndim != 3 or f_a.shape != f_b.shape:
        raise ValueError(f"dense_contrastive: f_a and f_b must be (N, P, d) of the same shape, got "
                         f"{tuple(f_a.shape)} and {tuple(f_b.shape)}")
    if g_a.ndim != 2 or g_a.shape != g_b.shape or g_a.shape[0] != f_a.shape[0]:
        raise ValueError(f"dense_contrastive: g_a and g_b must be (N, d) with N = {f_a.shape[0]}, got "
                         f"{tuple(g_a.shape)} and {tuple(g_b.shape)}")
    n = f_a.shape[0]
    if queue is None and n < 2:
        raise ValueError("dense_contrastive: in-batch negatives need a batch of at least 2 (or give a queue)")
    qa = F.normalize(full(f_a), dim=-1)
    kb = F.normalize(full(f_b), dim=-1)

    # global term (eq. 3.20)
    if queue is not None:
        loss_global = moco_infonce(g_a, g_b, queue[0], temperature)
    else:
        ga = F.normalize(full(g_a), dim=1)
        gb = F.normalize(full(g_b), dim=1)
        loss_global = F.cross_entropy(ga @ gb.T / temperature, torch.arange(n, device=ga.device))

    # dense term (eq. 3.19 / 3.24)
    weights = match_weights(match_plans(f_a, f_b, matching, eps, reg_m), matching, soft)
    pos = qa @ kb.transpose(1, 2) / temperature  # (N, P, P)
    if queue is not None:
        negs = F.normalize(full(queue[1]), dim=1)
        neg_lse = torch.logsumexp(torch.einsum("npd,kd->npk", qa, negs) / temperature, dim=2)  # (N, P)
    else:
        pooled = F.normalize(kb.mean(1), dim=1)  # (N, d) image-level view-B features
        neg_logits = torch.einsum("npd,kd->npk", qa, pooled) / temperature  # (N, P, N)
        own = torch.eye(n, dtype=torch.bool, device=qa.device)[:, None, :]
        neg_lse = torch.logsumexp(neg_logits.masked_fill(own, float("-inf")), dim=2)
    ell = torch.logaddexp(pos, neg_lse[:, :, None]) - pos  # (N, P, P) InfoNCE term per candidate
    loss_dense = (weights * ell).sum(2).mean()
    return 0.5 * (loss_global + loss_dense)
