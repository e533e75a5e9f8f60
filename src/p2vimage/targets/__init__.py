"""How results go out: output disk files (claimed ``.partial`` files renamed together),
the host-side copy into them, and the space they need, checked up front."""
