#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets.

`import/`: small layer tars in each header format, with the entries that
reach import's interesting paths (whiteouts, opaque markers, symlinks, hard
links, devices, PAX records, long names) and a few hostile ones.

`tools/`: one small tree (a long name whose first 100 bytes end in '/', a
symlink, a hard link, a fifo, a device, a sparse file, an id over 2^21, an
xattr) archived by the real tools: GNU tar in each format and each sparse
form, bsdtar, busybox tar and Python's tarfile, each that is installed.
Needs root for the device, the owner and the trusted.* xattr.

Run from this directory; the output is committed, so running it again is
only needed to change the seeds."""

import io
import os
import shutil
import subprocess
import tarfile
import tempfile

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


def trimmed(data):
    """The tar without its padding to a record: two zero blocks end it."""
    data = data.rstrip(b"\0")
    return data + b"\0" * (-len(data) % 512) + b"\0" * 1024


def tool_tree(root):
    os.makedirs(os.path.join(root, "t", "d" * 97))
    with open(os.path.join(root, "t", "d" * 97, "service.proto"), "wb") as f:
        f.write(b"syntax\n")
    with open(os.path.join(root, "t", "file"), "wb") as f:
        f.write(b"data\n")
    os.link(os.path.join(root, "t", "file"), os.path.join(root, "t", "hard"))
    os.symlink("file", os.path.join(root, "t", "sym"))
    os.mkfifo(os.path.join(root, "t", "fifo"))
    with open(os.path.join(root, "t", "sparse"), "wb") as f:
        f.seek(4096)
        f.write(b"x" * 512)
        f.truncate(12288)
    if os.geteuid() == 0:
        os.mknod(os.path.join(root, "t", "null"), 0o20644, os.makedev(1, 3))
        os.chown(os.path.join(root, "t", "file"), 3000000, 3000000)
        os.setxattr(os.path.join(root, "t", "file"), "trusted.t", b"1")
        os.setxattr(os.path.join(root, "t", "sym"), "trusted.s", b"2", follow_symlinks=False)
    os.setxattr(os.path.join(root, "t", "file"), "user.u", b"3")
    for dirpath, dirnames, filenames in os.walk(os.path.join(root, "t"), topdown=False):
        for name in filenames + dirnames + [""]:
            os.utime(os.path.join(dirpath, name), (1600000000, 1600000000), follow_symlinks=False)


def tools():
    out = os.path.join(HERE, "tools")
    os.makedirs(out, exist_ok=True)
    commands = {
        "gnu-tar-gnu-sparse.tar": ["tar", "--format=gnu", "-S", "-cf", "-", "t"],
        "gnu-tar-oldgnu-sparse.tar": ["tar", "--format=oldgnu", "-S", "-cf", "-", "t"],
        "gnu-tar-posix-sparse-1.0.tar": ["tar", "--format=posix", "-S", "--xattrs", "--xattrs-include=*", "-cf", "-", "t"],
        "gnu-tar-posix-sparse-0.1.tar": ["tar", "--format=posix", "-S", "--sparse-version=0.1", "-cf", "-", "t"],
        "gnu-tar-posix-sparse-0.0.tar": ["tar", "--format=posix", "-S", "--sparse-version=0.0", "-cf", "-", "t"],
        # ustar holds no id over 2^21 - 1: the tree without t/file, t/hard.
        "gnu-tar-ustar.tar": ["tar", "--format=ustar", "-cf", "-", "t/" + "d" * 97, "t/sym", "t/fifo", "t/sparse"],
        "bsdtar-pax.tar": ["bsdtar", "--format=pax", "-cf", "-", "t"],
        "bsdtar-gnutar.tar": ["bsdtar", "--format=gnutar", "-cf", "-", "t"],
        "busybox.tar": ["busybox", "tar", "-cf", "-", "t"],
    }
    with tempfile.TemporaryDirectory() as root:
        tool_tree(root)
        for name, cmd in commands.items():
            if shutil.which(cmd[0]) is None:
                print(f"skipped {name}: {cmd[0]} is not installed")
                continue
            data = subprocess.run(cmd, cwd=root, check=True, capture_output=True).stdout
            with open(os.path.join(out, name), "wb") as f:
                f.write(trimmed(data))
        for name, fmt in [("python-gnu.tar", tarfile.GNU_FORMAT), ("python-pax.tar", tarfile.PAX_FORMAT)]:
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
                t.add(os.path.join(root, "t"), arcname="t")
            with open(os.path.join(out, name), "wb") as f:
                f.write(trimmed(buf.getvalue()))


tools()
