""""""
from .api import Lab
from .common import LabError

__all__ = ["Lab", "LabError"]
