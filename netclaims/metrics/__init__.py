"""Metrics as pure functions of tensors (and, for ablation-type metrics, of a model and its
inputs). Each docstring gives the formula, the paper and the estimator; REFERENCE.md has the
definitions these follow."""

from netclaims.metrics.ablation import (
    Curve,
    ablation_curve,
    curve_auc,
    element_means,
    incoming_l1_norm,
    noise_curve,
    random_sharpness,
    single_unit_importance,
    unit_statistics,
)
from netclaims.metrics.cka import (
    MinibatchCKA,
    center_gram,
    cka_matrix,
    hsic1,
    linear_cka,
    minibatch_cka,
    rbf_cka,
)
from netclaims.metrics.clustering import (
    c1_subclass_selectivity,
    c2_subclass_silhouette,
    c3_class_std_ratio,
    c4_class_distance_std_ratio,
    standardize_for_c4,
)
from netclaims.metrics.dynamics import (
    BlockSplit,
    DoubleDescent,
    double_descent,
    early_stopping_epoch,
    moving_average,
    similarity_blocks,
)
from netclaims.metrics.frivolous import (
    prunable_fraction,
    redundant_fraction,
    widen_last_hidden,
    width_gain,
)
from netclaims.metrics.probes import (
    dbviz_plane,
    decision_region_similarity,
    plane_predictions,
    sample_triplets,
    train_linear_probe,
)
from netclaims.metrics.ranking import (
    granulated_kendall,
    granulated_permutation_p,
    group_taus,
    kendall_tau,
    pgdl_score,
)
from netclaims.metrics.selectivity import (
    class_balance,
    class_selectivity,
    live_units,
    mean_class_selectivity,
    mutual_information,
    selectivity_from_class_means,
    selectivity_order,
)

__all__ = [
    "BlockSplit",
    "Curve",
    "DoubleDescent",
    "MinibatchCKA",
    "ablation_curve",
    "c1_subclass_selectivity",
    "c2_subclass_silhouette",
    "c3_class_std_ratio",
    "c4_class_distance_std_ratio",
    "center_gram",
    "cka_matrix",
    "class_balance",
    "class_selectivity",
    "curve_auc",
    "dbviz_plane",
    "decision_region_similarity",
    "double_descent",
    "early_stopping_epoch",
    "element_means",
    "granulated_kendall",
    "granulated_permutation_p",
    "group_taus",
    "hsic1",
    "incoming_l1_norm",
    "kendall_tau",
    "linear_cka",
    "live_units",
    "mean_class_selectivity",
    "minibatch_cka",
    "moving_average",
    "mutual_information",
    "noise_curve",
    "pgdl_score",
    "plane_predictions",
    "prunable_fraction",
    "random_sharpness",
    "rbf_cka",
    "redundant_fraction",
    "sample_triplets",
    "selectivity_from_class_means",
    "selectivity_order",
    "similarity_blocks",
    "single_unit_importance",
    "standardize_for_c4",
    "train_linear_probe",
    "unit_statistics",
    "widen_last_hidden",
    "width_gain",
]
