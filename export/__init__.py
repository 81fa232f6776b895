"""Export a trained tagger to ONNX (fp32 and INT8) with parity and quality gates."""
