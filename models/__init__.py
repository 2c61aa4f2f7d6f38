"""Model loading shared by generation and training: weights, adapters, threads, precision."""
