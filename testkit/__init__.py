"""Support code the tests and the benchmarks share (seed databases, the app server, random adapters).

Never imported by production code: it sits above every layer.
"""
