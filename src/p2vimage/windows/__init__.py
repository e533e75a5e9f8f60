"""Facts about, and changes to, a Windows installation: one module per topic."""
