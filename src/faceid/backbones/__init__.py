"""The pretrained and weights stages: backbone networks, their weights, trained model files."""
