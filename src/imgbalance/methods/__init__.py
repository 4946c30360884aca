"""Balancing methods: a registry of planners that work on feature matrices.

Examples
--------
>>> from imgbalance.methods import create_method, list_methods
>>> "smote" in list_methods()
True
"""

from ._base import METHODS, Method, create_method, list_methods, register
from .augment import Augment
from .cleaning import ENN, Tomek
from .hybrid import Pipeline, SmoteENN, SmoteTomek, create_pipeline
from .mixup import Mixup
from .random import RandomOver, RandomUnder
from .smote import ADASYN, SMOTE, BorderlineSMOTE
from .stem import STEM

__all__ = [
    "ADASYN",
    "ENN",
    "METHODS",
    "SMOTE",
    "STEM",
    "Augment",
    "BorderlineSMOTE",
    "Method",
    "Mixup",
    "Pipeline",
    "RandomOver",
    "RandomUnder",
    "SmoteENN",
    "SmoteTomek",
    "Tomek",
    "create_method",
    "create_pipeline",
    "list_methods",
    "register",
]
