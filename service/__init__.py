"""fercomp server: gRPC + REST inference service for learned-compressed faces.

Nothing is done at import time; build a ``service.settings.Settings`` and start a
``service.app.Server`` (or run ``fercomp serve``).
"""
