"""netclaims: findings of deep-learning science as executable, statistically honest tests."""

from netclaims.numerics import pin_cpu_numerics

__version__ = "0.1.0"

pin_cpu_numerics()
