"""The command line: config checks before Hydra starts, one-line errors, console commands, sweep progress.

The library never imports this package.
"""
