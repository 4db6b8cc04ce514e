"""Benchmark harness: fast realistic load into the source database, and baselines to compare against."""
