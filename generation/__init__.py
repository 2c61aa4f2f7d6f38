"""Candidate generation: backends (transformers, vLLM), the vLLM server, the API, the tiny model builder."""
