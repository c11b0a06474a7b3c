"""mir: music information retrieval and recommendation engine."""
from .errors import MirError

__version__ = "0.1.0"

__all__ = ["MirError", "__version__"]
