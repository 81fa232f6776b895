"""Clients for the medner Triton server: text in, entities with character offsets out."""

from clients.ner_client import AsyncNerClient, NerClient, NerRequestError

__all__ = ["AsyncNerClient", "NerClient", "NerRequestError"]
