"""Intraclass clustering measures c1–c4 (Carbonnelle & De Vleeschouwer 2021;
``Simoncarbo/Intraclass-clustering-measures`` ``measures.py``).

Inputs are per-layer pre-activations (batch-norm outputs before the ReLU; conv maps reduced by
global **max** pooling; the output layer excluded), given as ``{layer: (n, neurons)}`` in depth
order. A neuron is *dead* when its pre-activation is negative on every sample; dead neurons
score 0 (c1, c3) or are dropped (c4). Every function returns a float, or with
``per_layer=True`` one value per layer (neuron-level top-k taken within each layer), which the
depth claims (IC-6, IC-7) read.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from sklearn.metrics import silhouette_samples
from sklearn.metrics.pairwise import cosine_distances

from netclaims._checks import ArrayLike, as_labels, as_tensor

STD_EPS = 1e-7
Layers = Mapping[str, ArrayLike]


def _layers(layers: Layers, n: int | None = None) -> dict[str, np.ndarray]:
    if not layers:
        raise ValueError("no layers given")
    out = {}
    for name, acts in layers.items():
        a = as_tensor(acts, f"layers[{name!r}]", ndim=2, min_rows=2)
        if n is not None and a.shape[0] != n:
            raise ValueError(f"layers[{name!r}] has {a.shape[0]} samples, labels has {n}")
        out[name] = a.to(torch.float64).cpu().numpy()
    return out


def _top_k_mean(values: np.ndarray, k: int) -> float:
    k = max(1, min(k, values.size))
    return float(np.mean(np.partition(values, -k)[-k:]))


def _superclass_of(classes: np.ndarray, subclasses: np.ndarray) -> dict[int, int]:
    """Each subclass's superclass: the class holding most of its samples."""
    mapping = {}
    for s in np.unique(subclasses):
        mapping[int(s)] = int(np.bincount(classes[subclasses == s]).argmax())
    return mapping


def _aggregate(per_layer: dict[str, np.ndarray], k: int | None, groups: int,
               reduce: str, as_layers: bool) -> float | dict[str, float]:
    """``per_layer[name]`` is ``(groups, neurons)``; top-k over neurons (all layers
    together, or each layer alone), then ``reduce`` (mean / median) over groups."""
    agg = np.median if reduce == "median" else np.mean
    if as_layers:
        return {name: float(agg([_top_k_mean(row, k or max(round(v.shape[1] / groups), 1))
                                 for row in v]))
                for name, v in per_layer.items()}
    stacked = np.concatenate(list(per_layer.values()), axis=1)
    k = k or max(round(stacked.shape[1] / groups), 1)
    return float(agg([_top_k_mean(row, k) for row in stacked]))


def c1_subclass_selectivity(preactivations: Layers, classes: ArrayLike, subclasses: ArrayLike,
                            *, k: int | None = None,
                            per_layer: bool = False) -> float | dict[str, float]:
    """c1, neuron-level subclass selectivity (eq. 1).

    Per subclass ``s`` of superclass ``S`` and neuron ``n``:
    ``(mean_s - mean_{S∖s}) / (std_s + std_{S∖s} + 1e-7)`` (population std); mean of the top
    ``k`` neurons over all layers; **median** over subclasses. ``k`` defaults to neurons /
    subclasses (the authors' code); the paper uses 30. Invariant to positive scaling.
    """
    y = as_labels(classes, "classes").numpy()
    sub = as_labels(subclasses, "subclasses", n=y.size).numpy()
    acts = _layers(preactivations, y.size)
    owner = _superclass_of(y, sub)
    subs = sorted(owner)
    scores = {}
    for name, a in acts.items():
        dead = np.all(a < 0, axis=0)
        rows = []
        for s in subs:
            inside = sub == s
            rest = (y == owner[s]) & ~inside
            if not rest.any():
                raise ValueError(f"subclass {s} is the only subclass of superclass {owner[s]}")
            value = (a[inside].mean(0) - a[rest].mean(0)) / (
                a[inside].std(0) + a[rest].std(0) + STD_EPS)
            rows.append(np.where(dead, 0.0, value))
        scores[name] = np.stack(rows)
    return _aggregate(scores, k, len(subs), "median", per_layer)


def c2_subclass_silhouette(activations: Layers, classes: ArrayLike, subclasses: ArrayLike, *,
                           k: int = 1, per_layer: bool = False) -> float | dict[str, float]:
    """c2, layer-level silhouette of subclasses (eq. 2).

    Per layer and superclass: silhouette score of each sample with its subclass as cluster
    label, **cosine** distance on the layer's activations; mean per subclass; mean over the
    top ``k`` layers (the authors' code: k = 1, the max); **median** over subclasses.
    """
    y = as_labels(classes, "classes").numpy()
    sub = as_labels(subclasses, "subclasses", n=y.size).numpy()
    acts = _layers(activations, y.size)
    owner = _superclass_of(y, sub)
    subs = sorted(owner)
    table = np.empty((len(acts), len(subs)))
    for li, a in enumerate(acts.values()):
        for c in np.unique(y):
            members = y == c
            labels_c = sub[members]
            if np.unique(labels_c).size < 2:
                raise ValueError(f"superclass {c} holds fewer than two subclasses; the "
                                 "silhouette is undefined")
            sil = silhouette_samples(a[members], labels_c, metric="cosine")
            for s in np.unique(labels_c):
                if owner[int(s)] == c:
                    table[li, subs.index(int(s))] = sil[labels_c == s].mean()
    if per_layer:
        return {name: float(np.median(table[i])) for i, name in enumerate(acts)}
    top = np.sort(table, axis=0)[-max(1, min(k, table.shape[0])):]
    return float(np.median(top.mean(0)))


def c3_class_std_ratio(preactivations: Layers, labels: ArrayLike, *, k: int | None = None,
                       per_layer: bool = False) -> float | dict[str, float]:
    """c3, neuron-level variance ratio (eq. 3).

    Per neuron and class ``i``: ``std_{class i} / (std_{all data} + 1e-7)`` (population
    std); mean of the top ``k`` neurons over all layers; **mean** over classes. ``k`` defaults
    to neurons / classes (authors' code; the paper uses 30). Invariant to positive affine
    rescaling of each neuron's pre-activations.
    """
    y = as_labels(labels).numpy()
    acts = _layers(preactivations, y.size)
    classes = np.unique(y)
    scores = {}
    for name, a in acts.items():
        dead = np.all(a < 0, axis=0)
        std_all = a.std(0)
        rows = [np.where(dead, 0.0, a[y == c].std(0) / (std_all + STD_EPS)) for c in classes]
        scores[name] = np.stack(rows)
    return _aggregate(scores, k, classes.size, "mean", per_layer)


def standardize_for_c4(preactivations: ArrayLike) -> np.ndarray:
    """c4's per-layer standardization: drop dead neurons, z-score each neuron, then
    ``max(z - percentile_p(z), 0)`` with ``p = min(round(100 - 1000 / N), 75)`` for ``N`` live
    neurons, so about 25% of samples (and on average at least 10 neurons per sample) are
    active. Invariant to positive affine rescaling of each neuron."""
    a = as_tensor(preactivations, "preactivations", ndim=2, min_rows=2) \
        .to(torch.float64).cpu().numpy()
    a = a[:, ~np.all(a < 0, axis=0)]
    if a.shape[1] == 0:
        return a
    z = (a - a.mean(0)) / (a.std(0) + STD_EPS)
    p = max(min(round(100 - 1000 / a.shape[1]), 75), 0)
    return np.maximum(z - np.percentile(z, p, axis=0, keepdims=True), 0.0)


def _pair_std(distances: np.ndarray) -> float:
    """Std of a symmetric distance matrix's entries over pairs ``i < j``, taken over all
    ``i != j`` (each pair twice, same mean and variance): whole-matrix sums instead of
    gathering the upper triangle, 8× faster at n = 1000 (c4's cost)."""
    n = distances.shape[0]
    off = (distances + distances.T) / 2
    np.fill_diagonal(off, 0.0)
    off -= off.sum() / (n * (n - 1))
    np.fill_diagonal(off, 0.0)
    return float(np.sqrt(np.einsum("ij,ij->", off, off) / (n * (n - 1))))


def c4_class_distance_std_ratio(preactivations: Layers, labels: ArrayLike, *, k: int = 1,
                                per_layer: bool = False) -> float | dict[str, float]:
    """c4, layer-level variance ratio (eq. 4).

    Per layer (standardized by :func:`standardize_for_c4`; layers with no live neuron are
    skipped) and class: the std of the pairwise cosine distances between the class's samples
    divided by (the std over all samples + 1e-7), pairs ``i < j``; mean over the top ``k``
    layers (k = 1 for plain nets); **mean** over classes.
    """
    y = as_labels(labels).numpy()
    acts = _layers(preactivations, y.size)
    classes = np.unique(y)
    if any(np.sum(y == c) < 2 for c in classes):
        raise ValueError("every class needs at least two samples for c4")
    per = {}
    for name, a in acts.items():
        z = standardize_for_c4(a)
        if z.shape[1] == 0:
            continue
        std_all = _pair_std(cosine_distances(z))
        per[name] = np.array([_pair_std(cosine_distances(z[y == c])) / (std_all + STD_EPS)
                              for c in classes])
    if not per:
        raise ValueError("every layer is dead (no neuron with a positive pre-activation)")
    if per_layer:
        return {name: float(v.mean()) for name, v in per.items()}
    table = np.stack(list(per.values()))
    top = np.sort(table, axis=0)[-max(1, min(k, table.shape[0])):]
    return float(top.mean(0).mean())
