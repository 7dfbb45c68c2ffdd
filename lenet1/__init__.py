"""LeNet-1 (LeCun et al., 1989) reproduced on the paper's own zip code digits."""

__version__ = "0.1.0"
