"""LLM serving pieces: the OpenAI-compatible API values, the pyfunc text-generation adapter
and the off-path hallucination evaluator (demo and test models live in gateway.demo).

Importing this package is cheap and Ray-free; each module imports what it needs.
"""
