"""medner: disease (D) and treatment (T) extraction from clinical notes.

The package holds the domain core every other folder imports (labels, data, spans, decoding, metrics, inference,
configuration), and above it training, the orchestration flows call (``steps``, ``promotion``) and the command
line (``cli``); the layers are in docs/development.md.
"""

__version__ = "0.1.0"
