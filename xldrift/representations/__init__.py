"""Per-layer representations of the items, notebook 03 (notebook 04 reads them).

``pooling`` names the two ways to reduce token states to one vector,
``extract`` runs the forward pass, ``cache`` keeps one file per model state
and language, and ``index`` is the table notebook 03 writes and the keys of
the tables made from it.
"""
