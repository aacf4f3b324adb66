"""Horospherical classification with "smart" ideal prototypes (seed 000 ch. 5), and its Euclidean counterpart.

Source: seed 000 (Berg 2024), ch. 5 "Horospherical Learning with Hierarchical Prototypes" (§5.1, §5.2,
eq. 2.17, 5.1–5.7, App. A.3); SPEC.md §5 "Hyperbolic head". One module per noun:

* :mod:`.ball`: Poincaré-ball maths (c = 1): ``to_poincare`` (exp₀), ``busemann`` (eq. 2.17),
  ``horospherical_logits`` (eq. 5.2), ``horosphere_radius`` (App. A.3);
* :mod:`.prototypes`: ideal prototypes ``random`` | ``uniform`` (Wang–Isola potential, eq. 5.5) | ``smart``
  (Gromov–Wasserstein to the label tree, eq. 5.6–5.7; the twopi layout at d = 2);
* :mod:`.heads`: ``HorosphericalHead``, ``EuclideanHead``, ``make_head``;
* ``make_optimizers`` (:mod:`tmf.models.optim`): AdamW for the network, Riemannian Adam for the prototypes on
  ``geoopt.Sphere``.

The average hierarchical cost (eq. 5.11) is a score, in :mod:`tmf.evaluate.metrics`.
"""

from ..optim import make_optimizers
from .ball import busemann, horosphere_radius, horospherical_logits, to_poincare
from .heads import HEADS, EuclideanHead, HorosphericalHead, make_head
from .prototypes import (
    PROTOTYPE_KINDS,
    gromov_wasserstein_assignment,
    make_prototypes,
    prototype_min_angle,
    random_prototypes,
    smart_prototypes,
    tree_order,
    uniform_prototypes,
    wang_isola_potential,
)

__all__ = [
    "HEADS",
    "PROTOTYPE_KINDS",
    "EuclideanHead",
    "HorosphericalHead",
    "busemann",
    "gromov_wasserstein_assignment",
    "horosphere_radius",
    "horospherical_logits",
    "make_head",
    "make_prototypes",
    "prototype_min_angle",
    "random_prototypes",
    "make_optimizers",
    "smart_prototypes",
    "to_poincare",
    "tree_order",
    "uniform_prototypes",
    "wang_isola_potential",
]
