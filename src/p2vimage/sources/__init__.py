"""How bytes come in: disk image files (raw and qemu formats) and Clonezilla image
directories (``clonezilla/``), turned into the sources of a conversion (``prepare.py``)."""
