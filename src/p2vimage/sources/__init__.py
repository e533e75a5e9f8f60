"""How bytes come in: disk image files (raw and qemu formats); later Clonezilla directories."""
