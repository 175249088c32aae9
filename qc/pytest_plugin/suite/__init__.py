"""The gate tests the plugin ships. Each reads one fixture's stage results and asserts a registry gate's verdict.

Not collected by file name: the plugin adds them to a session (``--qc-models``) unless a test file already imports
them (this repository's ``benchmarks/``).
"""
