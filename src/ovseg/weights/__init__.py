"""Model weights: the registry and how a name resolves to files (``registry``), downloads (``downloads``),
one thread policy for onnxruntime sessions (``onnx_sessions``), and tiny random-weight models in the real
on-disk formats (``tiny``), which tests and benchmarks load through the same loaders users run.
"""
