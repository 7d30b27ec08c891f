"""The web page (``page``): a Gradio face on the Python API."""
