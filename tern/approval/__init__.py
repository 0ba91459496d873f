"""Approval policy: who may approve which kind of request (see :mod:`tern.approval.policy`)."""

from tern.approval.policy import ApprovalPolicy, ApprovalPolicyError, ApprovalRule, PolicySource, load_policy

__all__ = ["ApprovalPolicy", "ApprovalPolicyError", "ApprovalRule", "PolicySource", "load_policy"]
