// Command gotar writes a tar of trees with Go's archive/tar, as Docker and
// BuildKit write layers: one header per entry from tar.FileInfoHeader, the
// format left for the writer to choose (USTAR, else PAX, else GNU), hard
// links by inode, and xattrs as SCHILY.xattr PAX records (what Docker's
// archive package adds). Stdlib only, so it runs offline.
//
// Usage: gotar OUT.tar SRC CASE...  (each CASE a path under SRC)
package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"unsafe"
)

func main() {
	if len(os.Args) < 4 {
		fmt.Fprintln(os.Stderr, "usage: gotar OUT.tar SRC CASE...")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2], os.Args[3:]); err != nil {
		fmt.Fprintln(os.Stderr, "gotar:", err)
		os.Exit(1)
	}
}

type inode struct{ dev, ino uint64 }

func run(out, src string, cases []string) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	seen := map[inode]string{}
	for _, c := range cases {
		err := filepath.WalkDir(filepath.Join(src, c), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return add(tw, src, path, seen)
		})
		if err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return f.Close()
}

func add(tw *tar.Writer, src, path string, seen map[inode]string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(src, path)
	if err != nil {
		return err
	}
	link := ""
	if fi.Mode()&os.ModeSymlink != 0 {
		if link, err = os.Readlink(path); err != nil {
			return err
		}
	}
	hdr, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	hdr.Name = rel
	if fi.IsDir() {
		hdr.Name += "/"
	}
	// Numeric owners only, as Docker writes them.
	hdr.Uname, hdr.Gname = "", ""
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().IsRegular() && st.Nlink > 1 {
		key := inode{uint64(st.Dev), st.Ino}
		if first, ok := seen[key]; ok {
			hdr.Typeflag = tar.TypeLink
			hdr.Linkname = first
			hdr.Size = 0
		} else {
			seen[key] = rel
		}
	}
	names, err := llistxattr(path)
	if err != nil {
		return fmt.Errorf("%s: listxattr: %w", rel, err)
	}
	for _, n := range names {
		v, err := lgetxattr(path, n)
		if err != nil {
			return fmt.Errorf("%s: getxattr %s: %w", rel, n, err)
		}
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = map[string]string{}
		}
		hdr.PAXRecords["SCHILY.xattr."+n] = string(v)
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	if hdr.Typeflag == tar.TypeReg {
		data, err := os.Open(path)
		if err != nil {
			return err
		}
		defer data.Close()
		if _, err := io.Copy(tw, data); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
	}
	return nil
}

// llistxattr and lgetxattr: the syscall package has only the variants
// that follow symlinks.
func llistxattr(path string) ([]string, error) {
	buf := make([]byte, 65536)
	n, err := xattrCall(syscall.SYS_LLISTXATTR, path, nil, buf)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, n := range bytes.Split(buf[:n], []byte{0}) {
		if len(n) > 0 {
			names = append(names, string(n))
		}
	}
	return names, nil
}

func lgetxattr(path, name string) ([]byte, error) {
	buf := make([]byte, 65536)
	n, err := xattrCall(syscall.SYS_LGETXATTR, path, &name, buf)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}

func xattrCall(trap uintptr, path string, name *string, buf []byte) (int, error) {
	p, err := syscall.BytePtrFromString(path)
	if err != nil {
		return 0, err
	}
	args := [4]uintptr{uintptr(unsafe.Pointer(p)), 0, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf))}
	if name != nil {
		np, err := syscall.BytePtrFromString(*name)
		if err != nil {
			return 0, err
		}
		args[1] = uintptr(unsafe.Pointer(np))
	} else {
		args = [4]uintptr{args[0], args[2], args[3], 0}
	}
	r, _, errno := syscall.Syscall6(trap, args[0], args[1], args[2], args[3], 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}
