"""Experiments that re-test a paper's claim, one module each, all of one shape.

Each module has a plan (what to run, checked before any work), a run that reads every finished step from the
:class:`~gbs_core.cache.DiskCache` and reports progress through a callback, and a result with ``table()``,
``to_dict()`` and ``from_dict()``; its figure lives in :mod:`gbs_core.figures`. The dashboard page and the command
line call the same run.

- :mod:`~gbs_core.experiments.pruning`: modularity- and GBS-guided pruning and their random control (both papers).
- :mod:`~gbs_core.experiments.sanity`: the layer-identification sanity check (CKA and GBS papers).
- :mod:`~gbs_core.experiments.dynamics`: per-layer metrics over a model's training checkpoints (modularity paper).
- :mod:`~gbs_core.experiments.adversarial`: modularity curves of attacked inputs (modularity paper).
- :mod:`~gbs_core.experiments.stitching`: model stitching against the motif statistic, CKA and GBS (GBS paper).
- :mod:`~gbs_core.experiments.transfer`: training-free transferability scores against probes and fine-tunes (GBS paper).
"""
