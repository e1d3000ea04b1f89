"""Benchmarks: scripts that print figures (messages/second, latency percentiles, memory)."""
