"""Fault injection against real processes (issue 10, section 2); see harness.py."""
