package filesystem

import (
	"io/fs"
	"syscall"
	"time"

	"github.com/berth-registry/berth/storage"
)

// statFile describes the file or directory name (storage path p), following
// links, as os.Stat and fileInfo would, without building an fs.FileInfo:
// the existence checks of every manifest GET come here.
func statFile(p, name string) (storage.FileInfo, error) {
	var st syscall.Stat_t
	for {
		err := syscall.Stat(name, &st)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return storage.FileInfo{}, &fs.PathError{Op: "stat", Path: name, Err: err}
		}
		break
	}
	info := storage.FileInfo{Path: p, ModTime: time.Unix(st.Mtim.Unix()), IsDir: st.Mode&syscall.S_IFMT == syscall.S_IFDIR}
	if !info.IsDir {
		info.Size = st.Size
	}
	return info, nil
}
