"""CLIP's features for mask candidates: masked crops and class tokens (``features``), dense patch features
(``dense``), and the text tower and tokenizer without open_clip, on ONNX (``text``).
"""
