"""Rate limiting: identity -> the one key composer -> a strategy over a store -> a verdict."""
