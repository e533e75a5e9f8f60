"""Disk images opened on the host for block I/O, whatever side of the pipeline they are on.

A private ``qemu-nbd`` export of an image read or written with libnbd (:mod:`.nbd`), the
file-descriptor-or-NBD targets that restores and copies write into, and new qcow2 files
to write through such an export (:mod:`.blockdev`).

A base-level package, like ``formats/``: the input side uses it (``guest/disks.py`` reads
partition tables through a read-only export; a Clonezilla restore in
``sources/clonezilla/`` writes its disk through a writable one) as much as the output
side (``targets/hostcopy.py``), so it can live in neither.  It knows nothing of guests,
sources or outputs, and imports only :mod:`p2vimage.errors` and :mod:`p2vimage.deps`.
"""
