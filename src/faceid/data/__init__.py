"""The dataset stage: CelebA-format folders (downloaded, local or synthetic) into data/celeba."""
