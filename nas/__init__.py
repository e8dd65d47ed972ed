"""How candidates are scored and searched: proxies, objectives, studies, storage and the CLI.

Proxies, the Optuna study, Ray execution and SQL storage arrive with their own issues; the command
line (:mod:`nas.cli`) is here from the start.
"""
