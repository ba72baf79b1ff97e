package oauth

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// ErrInsecureFile is wrapped by the error LoadClients, LoadOrCreateKeys and
// the reloads of a Server return for a file that group or others may
// access: the file holds secrets and must be mode 0600.
var ErrInsecureFile = errors.New("file is accessible by group or others")

// maxFileSize bounds the clients and keys files, which hold a few entries.
const maxFileSize = 1 << 20

// readPrivateFile reads path, refusing a file that is not regular, is
// accessible by group or others, or is larger than maxFileSize. It returns
// the file's stat for change detection.
func readPrivateFile(path string) ([]byte, os.FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("%s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, nil, fmt.Errorf("%s is mode %#o: %w; it holds secrets and must be 0600 (chmod 600 %s)", path, uint32(perm), ErrInsecureFile, path)
	}
	if fi.Size() > maxFileSize {
		return nil, nil, fmt.Errorf("%s is %d bytes, more than the %d this file can hold", path, fi.Size(), maxFileSize)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > maxFileSize {
		return nil, nil, fmt.Errorf("%s grew past %d bytes while being read", path, maxFileSize)
	}
	return b, fi, nil
}

// writeFileAtomic replaces path with data, mode 0600: it writes a temporary
// file in the same directory, syncs it and renames it over path, so readers
// see the old or the new content, never a mix. It returns the new file's
// stat, taken before the rename so that it cannot be another writer's.
func writeFileAtomic(path string, data []byte) (os.FileInfo, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, err
	}
	tmp := f.Name()
	fail := func(err error) (os.FileInfo, error) {
		_ = f.Close()
		_ = os.Remove(tmp)
		return nil, err
	}
	if err := f.Chmod(0o600); err != nil {
		return fail(err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	fi, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(tmp)
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return nil, err
	}
	// Make the rename durable; not every platform can sync a directory.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return fi, nil
}

// fileChanged reports whether cur differs from prev (nil: never read). An
// atomic rewrite gives a new inode, and a rewrite in place a new mtime or
// size; together they catch rewrites that fall in one mtime tick.
func fileChanged(prev, cur os.FileInfo) bool {
	return prev == nil || !os.SameFile(prev, cur) || !prev.ModTime().Equal(cur.ModTime()) || prev.Size() != cur.Size()
}
