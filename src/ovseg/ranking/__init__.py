"""Candidates against words: one prompt's or many classes' scores (``scoring``), and the top-K or every
instance per class (``selection``).
"""
