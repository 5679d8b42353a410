"""`volgen train`: run configs, examples per task, the loop (accelerate, EMA, checkpoint/resume, export).
Nothing is imported here, so `volgen --version` and the parser stay free of torch."""
