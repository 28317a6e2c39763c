"""The CodeFormer network exported to ONNX with the fidelity w as an input (`python -m codeformer_core export`).

Needs the optional `onnx` package (requirements-onnx.txt); nothing here is imported unless an export, or the
onnxruntime backend, is asked for.
"""
