"""The unlearning losses, as pure torch functions (tested on hand-computed cases)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def distill_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
               temperature: float = 1.0) -> torch.Tensor:
    """KL(p_teacher || p_student) at temperature T, averaged over the batch, times T².

    ``reduction="batchmean"`` gives the true per-sample KL; ``"mean"`` (the Bad Teacher
    reference code) would also divide by the class count.
    """
    import torch.nn.functional as F

    t = temperature
    return F.kl_div(F.log_softmax(student_logits / t, dim=1),
                    F.softmax(teacher_logits / t, dim=1),
                    reduction="batchmean") * (t * t)


def bad_teacher_loss(student_logits: torch.Tensor, competent_logits: torch.Tensor,
                     incompetent_logits: torch.Tensor, is_forget: torch.Tensor,
                     temperature: float = 1.0) -> torch.Tensor:
    """(1/n) Σ_i KL(p_{T_i}(x_i) || p_S(x_i)): T_i the incompetent teacher on forget rows,
    the competent one on retain rows (Chundawat et al. 2023), ``batchmean`` reduction."""
    import torch
    import torch.nn.functional as F

    t = temperature
    teacher = torch.where(is_forget[:, None], F.softmax(incompetent_logits / t, dim=1),
                          F.softmax(competent_logits / t, dim=1))
    return F.kl_div(F.log_softmax(student_logits / t, dim=1), teacher,
                    reduction="batchmean")


def plugin_mutual_information(probs: torch.Tensor, z: torch.Tensor,
                              eps: float = 1e-12) -> torch.Tensor:
    """Plug-in estimate of I(Ŷ; Z) in nats from softmax outputs and a binary source marker.

    p(c, z) = (1/N) Σ_i p_i(c)·1[z_i = z], p(z) empirical, p(c) = Σ_z p(c, z),
    Î = Σ_{c,z} p(c, z) log(p(c, z) / (p(c) p(z))) (Xu & Strohmer, data-point unlearning).
    """
    import torch
    import torch.nn.functional as F

    n = len(probs)
    onehot = F.one_hot(z.long(), 2).to(probs.dtype)            # (N, 2)
    joint = onehot.T @ probs / n                               # (2, C): p(z, c)
    p_z = onehot.mean(0)                                       # (2,)
    p_c = joint.sum(0)                                         # (C,)
    ratio = joint / (p_z[:, None] * p_c[None, :]).clamp_min(eps)
    return (joint * torch.log(ratio.clamp_min(eps))).sum()
