"""Attribution maps and their stability (moved here; split by concept in the next commit)."""

from .methods import *  # noqa: F403
