"""CodeFormer on ONNX: the network exported with the fidelity w as an input (`python -m codeformer_core export`),
the exported graphs cached per checkpoint, and the onnxruntime backend that runs them (`runtime.py`), chosen by
`backends.py`.

Needs the optional `onnx` and `onnxruntime` packages (requirements-onnx.txt); nothing that imports them is imported
unless an export, or the onnxruntime backend, is asked for.
"""
