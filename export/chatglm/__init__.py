"""ChatGLM-6B v1 (caption → music prompt) export: one LLM step graph with a stacked KV cache."""
