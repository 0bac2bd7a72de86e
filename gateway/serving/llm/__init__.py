"""LLM serving pieces: the OpenAI-compatible API values, a CPU text-generation model, the
pyfunc text-generation adapter and the off-path hallucination evaluator.

Importing this package is cheap and Ray-free; each module imports what it needs.
"""
