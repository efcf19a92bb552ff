"""Benchmarks (`inspector bench`): measurement, runs and reports. Not imported by the
runtime.
"""
