"""Benchmarks of understudy against bare anyio baselines, on asyncio and trio.

Run ``python -m bench`` (``--help`` for the options); see ``bench/README.md``.
"""
