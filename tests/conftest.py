"""Shared pytest configuration for co2gate's tests."""
