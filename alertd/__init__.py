"""alertd: a disaster-alert broadcasting engine (L-Alert / J-Alert style)."""

__version__ = "0.1.0"
