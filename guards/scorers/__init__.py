"""Hallucination scorers, one file per scorer; the public entry point is guards.hallucination."""
