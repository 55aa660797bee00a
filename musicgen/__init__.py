"""Server side of the MusicGen Triton deployment: serving logic for the model.py adapters, and the launcher."""
