"""Makes a plain checkout work: loads qc's fixtures, and the plugin itself when qc is not pip-installed."""

from importlib.metadata import entry_points

pytest_plugins = ["fixtures.models", "fixtures.diagnose"]
if not any(ep.name == "qc" for ep in entry_points(group="pytest11")):
    pytest_plugins.insert(0, "qc.pytest_plugin")
