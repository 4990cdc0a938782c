"""``vault eval``: the validation study (data sets, metrics, runs, report)."""
