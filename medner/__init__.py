"""medner: shared domain logic for disease (D) and treatment (T) extraction from clinical notes.

Flows, export, clients and monitoring import from here; nothing below re-implements it.
"""

__version__ = "0.1.0"
