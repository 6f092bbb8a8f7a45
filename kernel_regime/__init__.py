"""Shallow transformers in the kernel regime: the teacher-student experiment (see README.md)."""
