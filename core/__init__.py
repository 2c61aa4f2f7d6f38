"""The bottom layer: config, errors, paths and the words every layer shares. Imports no project module."""
