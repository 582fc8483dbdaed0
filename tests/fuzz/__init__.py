"""Helpers of tests/test_fuzz.py: hypothesis strategies and the threaded harness."""
