"""What the study computes from its representations and accuracies, notebooks 04 to 07.

* 04: ``metrics`` (CKA and Procrustes), ``drift`` (drift and alignment layer
  by layer), ``drift_summary`` (what those tables say), ``projection`` (the
  UMAP view).
* 05: ``typology`` and ``precomputed`` (linguistic distances), ``pretraining``
  (the languages seen in pretraining), ``stats`` and ``bootstrap``
  (correlations and intervals), ``correlation`` (the study's inputs and
  readings), ``claims`` (verdicts), ``paper`` (the paper's reading) and
  ``prose`` (the notebook's result-dependent sentences).
* 06: ``intervention`` (which blocks to freeze) and ``gains`` (what freezing
  them changed).
* 07: ``pairs`` (analyses over source-target pairs).
"""
