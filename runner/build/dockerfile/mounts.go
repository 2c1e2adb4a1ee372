package dockerfile

import (
	"fmt"
	"path"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// The types of Mount.
const (
	// MountBind binds a path of the build context, a stage or an image.
	MountBind = "bind"
	// MountCache mounts a directory kept between builds.
	MountCache = "cache"
	// MountTmpfs mounts an empty tmpfs.
	MountTmpfs = "tmpfs"
	// MountSecret mounts a secret of --secret as a file.
	MountSecret = "secret"
	// MountFile mounts Data as a read-only file: a RUN heredoc that
	// starts with "#!", run as a script, as BuildKit runs it.
	MountFile = "file"
)

// Sharing modes of cache mounts.
const (
	SharingShared  = "shared"
	SharingPrivate = "private"
	SharingLocked  = "locked"
)

// pipesDir is where BuildKit mounts a RUN heredoc script.
const pipesDir = "/dev/pipes/"

// Mount is one RUN --mount (or a heredoc script), with BuildKit's
// defaults filled in. None of it is part of the image: the executor
// mounts it for the step and leaves nothing of it in the layer.
type Mount struct {
	// Type is MountBind, MountCache, MountTmpfs, MountSecret or
	// MountFile.
	Type string
	// Target is where it is mounted, absolute (a relative target is
	// taken from the working directory); for a secret without a target,
	// /run/secrets/ID, and "" when it is only an environment variable.
	Target string
	// Source is the path a bind mounts, or the directory of the cache a
	// cache mount mounts, relative to its root ("." for the root).
	Source string
	// FromStage is the index in Plan.Stages of the stage a bind mounts
	// from (from=); -1 for the build context or an image.
	FromStage int
	// FromImage is the image a bind mounts from; nil for the build
	// context or a stage.
	FromImage *Image
	// ReadOnly mounts a bind or a cache read-only. A writable bind's
	// writes are discarded after the step.
	ReadOnly bool
	// CacheID names a cache (default: the target) and Sharing says who
	// may use it at once (SharingShared, SharingPrivate, SharingLocked).
	CacheID, Sharing string
	// UID, GID and Mode are the owner and mode of a new cache directory
	// (default root, 0755), of a secret's file (default root, 0400) and
	// of a heredoc script (0755).
	UID, GID int
	Mode     uint32
	// Size limits a tmpfs, in bytes; 0 is the kernel's default.
	Size int64
	// SecretID names the secret of --secret; Required fails the step
	// when it was not given (else the mount is left out).
	SecretID string
	Required bool
	// Env names an environment variable that holds the secret's value.
	Env string
	// Data is a MountFile's content.
	Data string
}

// mounts converts the --mount flags of a RUN of stage i, whose working
// directory is wd.
func (c *converter) mounts(i int, x *instructions.RunCommand, wd string) ([]Mount, error) {
	var out []Mount
	for _, m := range instructions.GetMounts(x) {
		if m.Type == instructions.MountTypeSSH {
			return nil, fmt.Errorf("%w: RUN --mount=type=ssh", ErrUnsupported)
		}
		if m.Type == instructions.MountTypeSecret {
			s, err := secretMount(m)
			if err != nil {
				return nil, err
			}
			out = append(out, s)
			continue
		}
		target := m.Target
		if target == "" {
			return nil, fmt.Errorf("%w: RUN --mount=type=%s needs a target", ErrInvalid, m.Type)
		}
		if !path.IsAbs(target) {
			target = path.Join("/", wd, target)
		}
		target = path.Clean(target)
		if target == "/" {
			return nil, fmt.Errorf("%w: invalid mount target %q", ErrInvalid, target)
		}
		mt := Mount{Type: string(m.Type), Target: target, Source: cleanSource(m.Source), FromStage: -1, ReadOnly: m.ReadOnly}
		switch m.Type {
		case instructions.MountTypeTmpfs:
			mt.Source = "."
			mt.Size = m.SizeLimit
		case instructions.MountTypeCache:
			if m.From != "" {
				return nil, fmt.Errorf("%w: RUN --mount=type=cache,from=", ErrUnsupported)
			}
			mt.CacheID = m.CacheID
			if mt.CacheID == "" {
				mt.CacheID = path.Clean(m.Target)
			}
			mt.Sharing = string(m.CacheSharing)
			if mt.Sharing == "" {
				mt.Sharing = SharingShared
			}
			mt.Mode = 0o755
			fileInfo(m, &mt)
		case instructions.MountTypeBind:
			if m.From != "" {
				if err := c.mountFrom(i, m.From, &mt); err != nil {
					return nil, err
				}
			}
		}
		out = append(out, mt)
	}
	return out, nil
}

// cleanSource makes a mount source relative to its root: "", "/" and
// "." are ".".
func cleanSource(src string) string {
	rel := strings.TrimPrefix(path.Clean("/"+src), "/")
	if rel == "" {
		return "."
	}
	return rel
}

// fileInfo applies uid=, gid= and mode=.
func fileInfo(m *instructions.Mount, mt *Mount) {
	if m.UID != nil {
		mt.UID = int(*m.UID)
	}
	if m.GID != nil {
		mt.GID = int(*m.GID)
	}
	if m.Mode != nil {
		mt.Mode = uint32(*m.Mode)
	}
}

// secretMount converts a secret mount as BuildKit's frontend does: the
// ID is id= (or source=, or the target's base name), the file is target=
// or /run/secrets/ID (none when only env= is given).
func secretMount(m *instructions.Mount) (Mount, error) {
	id := m.CacheID
	if m.Source != "" {
		id = m.Source
	}
	if id == "" {
		if m.Target == "" {
			return Mount{}, fmt.Errorf("%w: secret mount: one of id, source, target required", ErrInvalid)
		}
		id = path.Base(m.Target)
	}
	mt := Mount{Type: MountSecret, SecretID: id, Required: m.Required, FromStage: -1, Mode: 0o400, ReadOnly: true}
	fileInfo(m, &mt)
	if m.Env != nil {
		mt.Env = *m.Env
		if mt.Env == "" {
			mt.Env = id
		}
	}
	if m.Target != "" {
		mt.Target = path.Clean(m.Target)
		if !path.IsAbs(mt.Target) {
			mt.Target = path.Join("/", mt.Target)
		}
	} else if m.Env == nil {
		mt.Target = "/run/secrets/" + path.Base(id)
	}
	return mt, nil
}

// mountFrom resolves a bind mount's from=: an earlier stage (by name or
// number) or an image.
func (c *converter) mountFrom(i int, from string, mt *Mount) error {
	j, err := c.fromStage(i, from)
	if err != nil {
		return err
	}
	if j >= 0 {
		mt.FromStage = c.planned[j]
		return nil
	}
	img, err := c.resolve(from)
	if err != nil {
		return fmt.Errorf("RUN --mount from=%s: %w", from, err)
	}
	mt.FromImage = &img
	return nil
}

// runHeredoc is the command line of a RUN with heredocs, as BuildKit's
// frontend makes it: a single heredoc as the whole command ("RUN <<EOF")
// is the shell's script, or, starting with "#!", a script file mounted
// at /dev/pipes/NAME and run; any other use is given to the shell with
// the heredocs written back after the line, for the shell to read.
func runHeredoc(x *instructions.RunCommand) (args []string, script *Mount, err error) {
	args = x.CmdLine
	if len(args) != 1 || !x.PrependShell {
		return nil, nil, fmt.Errorf("%w: parsing produced an invalid run command: %v", ErrSyntax, args)
	}
	if h := parser.MustParseHeredoc(args[0]); h != nil {
		data := x.Files[0].Data
		if x.Files[0].Chomp {
			data = parser.ChompHeredocContent(data)
		}
		if strings.HasPrefix(data, "#!") {
			// The heredoc's name stays below pipesDir: "../../etc/passwd" is
			// /dev/pipes/etc/passwd, as in BuildKit, where the script is a
			// file of a scratch directory mounted there.
			target := path.Join(pipesDir, path.Clean("/"+x.Files[0].Name))
			return []string{target}, &Mount{Type: MountFile, Target: target, Data: data, Mode: 0o755, FromStage: -1, ReadOnly: true}, nil
		}
		return []string{data}, nil, nil
	}
	var b strings.Builder
	b.WriteString(args[0])
	for _, f := range x.Files {
		b.WriteByte('\n')
		b.WriteString(f.Data)
		b.WriteString(f.Name)
	}
	return []string{b.String()}, nil, nil
}

// heredocSummary is what progress shows of a RUN heredoc after the
// instruction: its first line, and "..." when there are more.
func heredocSummary(doc string) string {
	lines := strings.Split(strings.ReplaceAll(strings.TrimSpace(doc), "\r\n", "\n"), "\n")
	if len(lines) > 1 {
		return lines[0] + "..."
	}
	return lines[0]
}
