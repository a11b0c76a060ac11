"""Helpers the test modules share (they never import each other): data files, CLI runs, subprocesses,
tiny models and runs, tensors."""
