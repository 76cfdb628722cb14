"""Tests of the live quality measures."""
