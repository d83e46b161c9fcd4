"""The project's benchmarks, run by ``trading-console bench``.

Each benchmark module has a ``run()`` (plain or async) that returns a dict of figures;
``console.cli.bench.runner`` prints each figure beside its target.
"""
