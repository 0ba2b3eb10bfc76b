"""roost bench: the load generator, the servers it compares, the run, the report."""
