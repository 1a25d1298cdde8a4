"""The study as a whole: its parameters, its runner and what every stage shares.

``config`` declares every parameter once (:class:`~xldrift.study.config.StudyConfig`)
and ``paths`` builds every path from them; ``runner`` executes the notebooks
after ``checks``, and ``provenance`` records what each executed copy was made
from; ``verify`` compares the tables of two runs. ``io`` (atomic writes),
``locks`` (between processes), ``cachecheck`` (verified cache entries) and
``runlog`` (what the terminal is told) serve every notebook.
"""
