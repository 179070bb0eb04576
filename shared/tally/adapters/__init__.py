"""The only code that talks to AWS (dynamo/), plus in-memory stores with the same contracts (memory)."""
