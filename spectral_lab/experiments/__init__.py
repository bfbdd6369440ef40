"""The standard-versus-stable study (moved here; split by concept in the next commit)."""

from .claims import *  # noqa: F403
from .claims import _z_se  # noqa: F401
