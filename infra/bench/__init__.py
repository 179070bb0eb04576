"""`tally bench`: cost figures measured side by side with their baselines (figures.py), the draft
invoice figure (invoice.py), alert latency (alerts.py) and the load helpers they share (load.py)."""
