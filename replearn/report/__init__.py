"""The depth report: aggregate a sweep of runs into figures and tables."""
