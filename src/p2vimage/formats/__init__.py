"""Readers of byte formats: what the bytes of a file or a disk structure say.

Partition tables, registry value data, PE images, NTFS metadata (``$Volume``,
``$Bitmap``), the ``hiberfil.sys`` header, INF text, cabinet header tables and
ntfsclone streams.  Several layers use them, so they sit below all of them and import
nothing else of ours, not even :mod:`p2vimage.errors`: each module raises its own
``ValueError`` subclass, and a caller that reports to a user turns it into the
:class:`~p2vimage.errors.P2VError` (and exit code) that fits there.
"""
