"""netclaims: findings of deep-learning science as executable, statistically honest tests."""

__version__ = "0.1.0"
