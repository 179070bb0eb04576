"""The Metronome-compatible HTTP surface: request models, routes, error mapping."""
