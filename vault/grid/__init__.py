"""Grids: parsing, exact grid operations, reprs and the facts of a demonstration pair."""
