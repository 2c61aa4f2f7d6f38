"""prefloop's tiny title model (``tiny``): a 4 M-parameter Qwen2 trained here from the repo's own data.

``python -m generation.tiny_model.build`` (``make tiny-model``) rebuilds ``models/embedded`` from scratch.
"""
