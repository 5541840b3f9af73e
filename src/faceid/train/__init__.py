"""The runs and train stages: ArcFace fine-tuning of one (task, backbone)."""
