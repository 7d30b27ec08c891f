"""The DVC pipeline's side: what each stage script runs (``runner``) and editing params.yaml in place
(``params_text``).
"""
