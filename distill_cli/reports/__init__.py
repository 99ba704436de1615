"""Looking at results: `distill report` (one run) and `distill compare` (several).

``history`` reads a run folder back as data, ``plots`` draws it, ``document`` writes the report
pages, ``compare`` puts runs side by side.
"""
