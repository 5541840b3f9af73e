"""The evaluate stage: embeddings, verification and identification metrics, attribute maps."""
