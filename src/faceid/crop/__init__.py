"""The crop stage: detection, acceptance, and the crop cache every later stage reads."""
