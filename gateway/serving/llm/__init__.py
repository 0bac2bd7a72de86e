"""LLM serving pieces: generation values (`generation`), OpenAI request parsing
(`openai_parse`) and response formatting (`openai_format`), stream helpers (`streaming`),
the pyfunc text-generation adapter and the off-path hallucination evaluator (demo and test
models live in gateway.demo).

Importing this package is cheap and Ray-free; each module imports what it needs.
"""
