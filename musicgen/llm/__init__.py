"""Framework-free logic of the image → music-prompt half: prompts, tokenizers, image preprocessing, recipes."""
