"""Address units inside any ``torch.nn.Module``.

A *layer* is a named submodule whose output holds the units (by default the outputs of
nonlinearity modules, so units are taken after the nonlinearity). A *unit* is one channel of
that output: a neuron of a linear layer, a whole feature map of a conv layer. The unit axis is
1 (channels first) unless the module carries ``netclaims_unit_axis = -1`` (token features of a
transformer).

Three modules:

* selecting layers (exact name, glob pattern, module type, or ``"auto"``) and grouping them
  into ordered :class:`Stages`;
* recording activations of many layers in one forward pass (:class:`Recorder`, :func:`stream`,
  :func:`collect`), with streaming sinks (:class:`ClassMeans`, :class:`Moments`) whose memory
  does not grow with the number of samples;
* intervening on units after the nonlinearity (:class:`Intervention`, :func:`intervene`):
  clamp to zero or to a stored value, add scaled Gaussian noise;
* evaluating many interventions at once (:func:`intervened_outputs`): the input batch is run
  through the layers below the first intervened layer once, then replicated once per mask, so
  the computation below is never repeated per mask. Models for which the replicated batch is
  not valid (a skip connection that bypasses the intervened layer, an op that mixes samples)
  are detected and evaluated mask by mask instead.

Every hook is removed when its context exits, even when the forward raises, so the model's
outputs afterwards are bit-identical to its outputs before.
"""

from netclaims.units.interventions import (
    STRATEGIES,
    BatchingUnsupportedError,
    Intervention,
    ablation,
    incoming_layer,
    intervene,
    intervened_outputs,
    noise,
    unit_counts,
)
from netclaims.units.recording import (
    REDUCTIONS,
    Batch,
    ClassMeans,
    Concatenate,
    Data,
    Moments,
    PerLayer,
    Recorder,
    Sink,
    batches,
    collect,
    eval_mode,
    execution_order,
    model_device,
    positions_as_samples,
    reduce_spatial,
    stream,
)
from netclaims.units.selection import (
    CALL_SEPARATOR,
    NONLINEARITIES,
    LayerSpec,
    Stages,
    UnknownLayerError,
    layer_names,
    select_layers,
)

__all__ = [
    "CALL_SEPARATOR",
    "NONLINEARITIES",
    "REDUCTIONS",
    "STRATEGIES",
    "Batch",
    "BatchingUnsupportedError",
    "ClassMeans",
    "Concatenate",
    "Data",
    "Intervention",
    "LayerSpec",
    "Moments",
    "PerLayer",
    "Recorder",
    "Sink",
    "Stages",
    "UnknownLayerError",
    "ablation",
    "batches",
    "collect",
    "eval_mode",
    "execution_order",
    "incoming_layer",
    "intervene",
    "intervened_outputs",
    "layer_names",
    "model_device",
    "noise",
    "positions_as_samples",
    "reduce_spatial",
    "select_layers",
    "stream",
    "unit_counts",
]
