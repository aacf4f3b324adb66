"""tmf: reproducible self-supervised learning on MiniFrance / tinyMiniFrance aerial imagery."""

__version__ = "0.1.0"
