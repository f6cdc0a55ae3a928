"""crimeflow: predict whether a reported Chicago crime ends in an arrest; keep the model healthy."""

__version__ = "0.1.0"
