"""The Geodite network, one physical idea per module (see each module's docstring)."""

from geodite.model.geodite import Geodite, GeoditeConfig

__all__ = ["Geodite", "GeoditeConfig"]
