"""The command line: checks before Hydra starts (check), one-line errors (errors), the running Hydra job (job),
the console commands (commands) and sweep progress (sweeps).

The library never imports this package; what both need (composing and validating configs, describing a
composition error in one line) lives in :mod:`replearn.conf.compose`.
"""
