"""The ``aegis`` commands that are not a service process: one module per command (``aegis
replay`` is ``cli/replay.py``, ...), listed in ``common/cli.py``, the dispatcher.

The one package that may import any other (docs/architecture.md, tests/unit/test_import_rules.py):
a command such as ``aegis replay`` drives the feed, the brain and the orchestrator together.
Nothing imports ``cli``. A service's own offline tools that are also its library
(``services/brain/smc_cli.py``, ``model_eval.py``) and research's (``research/*_cli.py``) stay
with their package.
"""
