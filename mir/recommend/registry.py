"""Recommenders by name: :func:`make` for the command line and the API, :func:`recommender_class`
for reading saved models. The one module that knows every method."""
from __future__ import annotations

from ..errors import ParameterError
from ._base import Recommender
from .content_taste import ContentTaste
from .hybrid import Hybrid
from .methods import Collaborative, ContentBased, Popularity

METHODS: dict[str, type[Recommender]] = {
    "popularity": Popularity, "content": ContentBased, "content-taste": ContentTaste, "als": Collaborative,
    "hybrid": Hybrid,
}
CLASSES: dict[str, type[Recommender]] = {cls.__name__: cls for cls in METHODS.values()}


def make(method: str, **params) -> Recommender:
    """A recommender by name: popularity, content, content-taste, als or hybrid (the default)."""
    if method not in METHODS:
        raise ParameterError(f"unknown method {method!r}; choose one of {sorted(METHODS)}")
    return METHODS[method](**params)


def recommender_class(name: str) -> type[Recommender]:
    """The recommender class a saved model's ``model.json`` names."""
    cls = CLASSES.get(name)
    if cls is None:
        raise ParameterError(f"unknown recommender class {name!r} in a saved model")
    return cls
