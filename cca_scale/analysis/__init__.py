"""From distance matrices to the paper's answers: clusters, group statistics, training dynamics,
sequence timesteps, baselines, figures and export.

Everything here takes :class:`cca_scale.DistanceMatrix` objects (or, for the activation-level
analyses, arrays of shape ``(n_datapoints, n_neurons)``), never prints, and imports matplotlib,
xarray and pyarrow only inside the functions that need them.
"""

from cca_scale.analysis.baselines import BASELINE_METRICS, metrics_table
from cca_scale.analysis.clustering import (
    LINKAGE_METHODS,
    Agreement,
    ClusterResult,
    cluster,
    cluster_agreement,
)
from cca_scale.analysis.dynamics import (
    ConvergenceOrder,
    SignalNoiseSplit,
    convergence_curves,
    convergence_order,
    rho_over_training,
    signal_noise_split,
)
from cca_scale.analysis.export import (
    EXPORT_FORMATS,
    export_distances,
    load_distances,
    read_exported,
)
from cca_scale.analysis.groups import (
    GroupCorrelation,
    group_correlation,
    group_statistics,
    mean_distance_to_group,
    subsample_neurons,
)
from cca_scale.analysis.plots import (
    plot_convergence,
    plot_dendrogram,
    plot_group_bars,
    plot_heatmap,
    plot_layer_map,
    plot_signal_noise,
)
from cca_scale.analysis.sequences import timestep_distances
from cca_scale.analysis.toy import signal_noise_layers

__all__ = [
    "Agreement",
    "BASELINE_METRICS",
    "ClusterResult",
    "ConvergenceOrder",
    "EXPORT_FORMATS",
    "GroupCorrelation",
    "LINKAGE_METHODS",
    "SignalNoiseSplit",
    "cluster",
    "cluster_agreement",
    "convergence_curves",
    "convergence_order",
    "export_distances",
    "group_correlation",
    "group_statistics",
    "mean_distance_to_group",
    "metrics_table",
    "plot_convergence",
    "plot_dendrogram",
    "plot_group_bars",
    "plot_heatmap",
    "plot_layer_map",
    "plot_signal_noise",
    "load_distances",
    "read_exported",
    "rho_over_training",
    "signal_noise_layers",
    "signal_noise_split",
    "subsample_neurons",
    "timestep_distances",
]
