"""Clonezilla image directories (``ocs-sr savedisk``) as input: metadata, partition
streams (partclone, ntfsclone, dd), the partition table writers, and the restore of one
disk into a file (the ``restore-clonezilla`` command around it: :mod:`p2vimage.restore`)."""
