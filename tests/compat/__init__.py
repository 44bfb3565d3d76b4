"""Compatibility corpus: real programs' concurrent.futures patterns, run on stdlib and corral.

Every test takes the ``impl`` fixture and runs the same code with the same assertions on
both; a test that passes on "stdlib" and fails on "corral" is a corral bug.
"""
