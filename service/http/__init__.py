"""REST transport (FastAPI): health, metrics, models, classify, predictions."""

from service.http.app import create_app

__all__ = ["create_app"]
