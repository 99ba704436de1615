"""Looking at results: `distill report` (one run) and `distill compare` (several).

``history`` reads a run folder back as data, ``plots`` draws it, ``document`` assembles and
writes the report pages, ``render`` turns them into Markdown and HTML, ``compare`` puts runs side
by side.
"""
