"""Proven identities of the people and services that start runs and decide approvals (issue 22)."""
