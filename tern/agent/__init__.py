"""Agent-run logic that is not orchestration: composing answers from step results."""
