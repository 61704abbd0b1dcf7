"""Model loading: bundled default, hub ids, local folders and tiny random test models."""

from peftlab.models.backbone import Backbone
from peftlab.models.loading import load_backbone

__all__ = ["Backbone", "load_backbone"]
