"""Chaos: drive real clients against real nodes, inject faults, record everything, check the history."""
