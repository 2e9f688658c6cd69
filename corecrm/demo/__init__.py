"""Realistic sample data for `corecrm demo`."""
