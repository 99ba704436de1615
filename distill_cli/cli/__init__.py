"""The command line: Typer commands that parse, call `distill_cli.api`, and render with rich.

``app`` holds the commands and ``entry`` the process entry point (error lines, exit codes,
``--debug``); ``export`` and ``students`` are the larger command groups; ``options`` the
options shared by several commands; ``console``, ``console_export`` and ``console_students``
every table and the progress bar. Nothing outside this package prints.
"""
