"""Developer tools: tools/stage_deps.py derives dvc.yaml's deps from the code."""
