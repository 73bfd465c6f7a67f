#!/usr/bin/env python3
"""Writes the seed corpus of the `import` fuzz target: small layer tars in
each header format, with the entries that reach import's interesting paths
(whiteouts, opaque markers, symlinks, hard links, devices, PAX records, long
names) and a few hostile ones. Run from this directory; the output is
committed, so running it again is only needed to change the seeds."""

import io
import os
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))

MTIME = 1_600_000_000


def info(name, kind=tarfile.REGTYPE, data=b"", **kw):
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.size = len(data) if kind == tarfile.REGTYPE else 0
    ti.mtime = MTIME
    ti.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    for k, v in kw.items():
        setattr(ti, k, v)
    return ti, (io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def write(path, fmt, entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for ti, data in entries:
            tar.addfile(ti, data)
    # Drop the padding to a 10 KiB record: the end-of-archive marker is two
    # zero blocks, and shorter inputs fuzz faster.
    data = buf.getvalue().rstrip(b"\0")
    data += b"\0" * (-len(data) % 512) + b"\0" * 1024
    with open(os.path.join(HERE, path), "wb") as f:
        f.write(data)


layer = [
    info("etc/", tarfile.DIRTYPE),
    info("etc/hostname", data=b"box\n"),
    info("etc/.wh.motd"),
    info("var/", tarfile.DIRTYPE),
    info("var/.wh..wh..opq"),
    info("var/log", tarfile.SYMTYPE, linkname="/tmp"),
    info("bin", tarfile.SYMTYPE, linkname="usr/bin"),
    info("usr/bin/sh", data=b"#!"),
    info("etc/hosts", tarfile.LNKTYPE, linkname="etc/hostname"),
    info("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3),
    info("dev/fifo", tarfile.FIFOTYPE),
    info(".wh..wh.plnk/", tarfile.DIRTYPE),
]
write("import/ustar-layer.tar", tarfile.USTAR_FORMAT, layer)

long_dir = "d" * 60 + "/" + "e" * 60
write(
    "import/gnu-long-names.tar",
    tarfile.GNU_FORMAT,
    [
        info(long_dir + "/", tarfile.DIRTYPE),
        info(long_dir + "/" + "f" * 120, data=b"long"),
        info("link-" + "l" * 120, tarfile.SYMTYPE, linkname=long_dir + "/" + "f" * 120),
        info("hard-" + "h" * 120, tarfile.LNKTYPE, linkname=long_dir + "/" + "f" * 120),
        info(long_dir + "/.wh." + "g" * 100),
    ],
)

write(
    "import/pax-records.tar",
    tarfile.PAX_FORMAT,
    [
        info("x/", tarfile.DIRTYPE, pax_headers={"SCHILY.xattr.user.a": "1", "SCHILY.xattr.trusted.overlay.opaque": "y"}),
        info("x/file", data=b"pax", uid=70000, gid=70000, pax_headers={"SCHILY.xattr.user.b": "\n2 size=0\n", "mtime": "1600000000.5"}),
        info("x/" + "p" * 150, data=b"p"),
        info("x/sym", tarfile.SYMTYPE, linkname="../" * 40 + "t" * 50),
        info("x/.wh.gone", pax_headers={"comment": "whiteout"}),
    ],
)

write(
    "import/hostile.tar",
    tarfile.USTAR_FORMAT,
    [
        info("evil", tarfile.SYMTYPE, linkname="/"),
        info("evil/etc/passwd", data=b"root::0:0::/:/bin/sh\n"),
        info("up", tarfile.SYMTYPE, linkname="../../.."),
        info("up/.wh.x"),
        info("up/x/.wh..wh..opq"),
        info("stolen", tarfile.LNKTYPE, linkname="up/etc/passwd"),
        info("../escape", data=b"x"),
    ],
)
