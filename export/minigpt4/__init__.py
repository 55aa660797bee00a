"""MiniGPT4 (image → caption) export: vision/Q-Former/projection, token embedding and LLaMA step graphs."""
