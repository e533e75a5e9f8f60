"""Readers of byte formats shared by several layers; they import nothing else of ours."""
