"""Benchmark protocols (``medzs benchmark ...``): :mod:`medzs.benchmarks.merl`."""
