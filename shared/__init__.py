"""JobForge's domain core: settings, flags, models, the template registry, the store and the SDK."""

__version__ = "0.1.0"
