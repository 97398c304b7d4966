"""The Llama-style model (llama.py), its size presets (presets.py) and Hugging Face conversion (hf.py).

Import from the submodules: presets.py stays free of torch so config validation starts fast.
"""
