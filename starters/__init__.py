"""starters package."""
