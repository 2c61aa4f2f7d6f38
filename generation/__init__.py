"""Candidate generation: the embedded title model, model loading, backends, pairing, and the API."""
