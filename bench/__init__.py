"""Benchmarks (``metactl bench ...``): measured figures with ratios taken in one run, never tests.

Each module measures one thing and prints a table; its numbers go into the README and closing notes.
"""
