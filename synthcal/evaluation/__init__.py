"""Evaluation of FP32 and INT8 IRs: top-1 and agreement (``evaluate``), extra test sets (``evaluation_sets``),
paired statistics against FP32 (``stats``) and the interleaved speed measurement (``timing``)."""
