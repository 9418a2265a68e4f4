"""``cca-scale demo``: the paper's findings reproduced on small networks trained on the spot.

:func:`run_demo` trains a sweep of MLPs on scikit-learn's bundled digits (no download), stores
their activations in a Zarr :class:`~cca_scale.ActivationStore`, computes all-pairs distances with
:func:`cca_scale.compare` on one Dask client, analyses them with :mod:`cca_scale.analysis`, and
writes tables, plots and a report. Modules: :mod:`~cca_scale.demo.sweep` (training and
activations), :mod:`~cca_scale.demo.findings` (every number), :mod:`~cca_scale.demo.report`
(tables, plots, files).
"""

from cca_scale.demo.run import DemoFindings, DemoReport, run_demo

__all__ = ["DemoFindings", "DemoReport", "run_demo"]
