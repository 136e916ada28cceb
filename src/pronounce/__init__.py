"""Reference pipeline for LLM-based English pronunciation assessment (Ahn & Nam 2025)."""

__version__ = "0.1.0"
