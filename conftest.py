"""Makes a plain checkout work: registers the qc plugin when it is not installed (no ``pytest11`` entry point).

Everything else (fixtures, gate tests) ships with the plugin; ``benchmarks/`` and ``fixtures/`` re-export it.
Entry-point plugins are imported before this file is read, so the plugin is already loaded when qc is installed.
"""

import sys

pytest_plugins = [] if "qc.pytest_plugin" in sys.modules else ["qc.pytest_plugin"]
